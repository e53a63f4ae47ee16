//! Placement as the seeds describe it (SPEC §5.1, §5.2), its errors, and its invariants.

mod props;

use corral_placement::{Layout, Where};
use expect_test::{Expect, expect};

/// Loads `loads` (model, K, where) in order into a process of `cores` cores and renders the
/// core map, each load's warning, and each failure.
#[track_caller]
fn check(cores: usize, groups: &[usize], loads: &[(&str, usize, Where)], expect: Expect) {
    let mut layout = Layout::new(cores, groups);
    let mut notes = String::new();
    for (model, k, at) in loads {
        match layout.place(model, *k, at) {
            Ok(placement) => {
                if let Some(warning) = placement.warning() {
                    notes += &format!("warning: {warning}\n");
                }
                layout.commit(&placement);
            }
            Err(err) => notes += &format!("error: {model} at {at}: {err}\n"),
        }
    }
    expect.assert_eq(&(layout.render() + &notes));
}

fn at(start: usize) -> Where {
    Where::Cores { start: Some(start), count: None }
}

fn at_count(start: usize, count: usize) -> Where {
    Where::Cores { start: Some(start), count: Some(count) }
}

#[test]
fn seed_1_default_loads_go_to_the_least_used_core() {
    check(
        8,
        &[],
        &[("m0", 1, Where::Auto), ("m1", 1, Where::Auto)],
        expect![[r#"
        core    nc0  nc1  nc2  nc3  nc4  nc5  nc6  nc7
        m0[0]   [==]
        m1[0]        [==]
    "#]],
    );
}

#[test]
fn seed_4_explicit_start_and_replicas_in_any_order() {
    let expected = expect![[r#"
        core    nc0  nc1  nc2  nc3
        m1[0]   [==]
        m1[1]        [==]
        m0[0]                  [==]
    "#]];
    check(4, &[], &[("m0", 1, at(3)), ("m1", 1, at_count(0, 2))], expected);
    check(
        4,
        &[],
        &[("m1", 1, at_count(0, 2)), ("m0", 1, at(3))],
        expect![[r#"
        core    nc0  nc1  nc2  nc3
        m1[0]   [==]
        m1[1]        [==]
        m0[0]                  [==]
    "#]],
    );
}

#[test]
fn seed_5_multicore_replicates_on_every_core() {
    check(
        8,
        &[],
        &[("m0", 1, Where::Multicore)],
        expect![[r#"
        core    nc0  nc1  nc2  nc3  nc4  nc5  nc6  nc7
        m0[0]   [==]
        m0[1]        [==]
        m0[2]             [==]
        m0[3]                  [==]
        m0[4]                       [==]
        m0[5]                            [==]
        m0[6]                                 [==]
        m0[7]                                      [==]
    "#]],
    );
    check(
        7,
        &[],
        &[("wide", 2, Where::Multicore)],
        expect![[r#"
        core     nc0  nc1  nc2  nc3  nc4  nc5  nc6
        wide[0]  [=======]
        wide[1]            [=======]
        wide[2]                      [=======]
    "#]],
    );
}

#[test]
fn seed_6_flexeg_layouts_on_inf1_6xlarge() {
    let good = [("A", 2, at(0)), ("B", 4, at(2)), ("C", 3, at(6)), ("D", 4, at(9))];
    check(
        16,
        &[],
        &good,
        expect![[r#"
        core    nc0  nc1  nc2  nc3  nc4  nc5  nc6  nc7  nc8  nc9  nc10 nc11 nc12 nc13 nc14 nc15
        A[0]    [=======]
        B[0]              [=================]
        C[0]                                  [============]
        D[0]                                                 [=================]
    "#]],
    );
    let bad = [("A", 2, at(0)), ("B", 4, at(2)), ("C", 3, at(5)), ("D", 4, at(9))];
    check(
        16,
        &[],
        &bad,
        expect![[r#"
        core    nc0  nc1  nc2  nc3  nc4  nc5  nc6  nc7  nc8  nc9  nc10 nc11 nc12 nc13 nc14 nc15
        A[0]    [=======]
        B[0]              [=================]
        C[0]                             [============]
        D[0]                                                 [=================]
        shared                            ^^
        warning: C shares nc5 with B: executions there take turns and each change of model is a switch
    "#]],
    );
    let other = [("C", 3, at(0)), ("A", 2, at(3)), ("D", 4, at(5)), ("B", 4, at(9))];
    check(
        16,
        &[],
        &other,
        expect![[r#"
        core    nc0  nc1  nc2  nc3  nc4  nc5  nc6  nc7  nc8  nc9  nc10 nc11 nc12 nc13 nc14 nc15
        C[0]    [============]
        A[0]                   [=======]
        D[0]                             [=================]
        B[0]                                                 [=================]
    "#]],
    );
}

#[test]
fn seed_7_flexeg_start_must_leave_room_on_inf1_xlarge() {
    check(
        4,
        &[],
        &[("x0", 2, at(0)), ("x1", 2, at(1)), ("x2", 2, at(2)), ("x3", 2, at(3))],
        expect![[r#"
        core    nc0  nc1  nc2  nc3
        x0[0]   [=======]
        x1[0]        [=======]
        x2[0]             [=======]
        shared        ^^   ^^
        warning: x1 shares nc1 with x0: executions there take turns and each change of model is a switch
        warning: x2 shares nc2 with x1: executions there take turns and each change of model is a switch
        error: x3 at start_nc=3 nc_count=-1: model needs 2 cores from nc3, process has nc0-nc3
    "#]],
    );
}

#[test]
fn legacy_groups_place_by_group_index() {
    let loads =
        [("A", 2, Where::Group(0)), ("B", 4, Where::Group(1)), ("C", 3, Where::Group(2)), ("D", 4, Where::Group(3))];
    check(
        13,
        &[2, 4, 3, 4],
        &loads,
        expect![[r#"
        core    nc0  nc1  nc2  nc3  nc4  nc5  nc6  nc7  nc8  nc9  nc10 nc11 nc12
        A[0]    [=======]
        B[0]              [=================]
        C[0]                                  [============]
        D[0]                                                 [=================]
    "#]],
    );
    let loads =
        [("A", 2, Where::Group(1)), ("E", 1, Where::Group(1)), ("B", 4, Where::Group(0)), ("F", 1, Where::Group(4))];
    check(
        13,
        &[2, 4, 3, 4],
        &loads,
        expect![[r#"
        core    nc0  nc1  nc2  nc3  nc4  nc5  nc6  nc7  nc8  nc9  nc10 nc11 nc12
        A[0]              [=======]
        E[0]              [==]
        shared             ^^
        warning: E shares nc2 with A: executions there take turns and each change of model is a switch
        error: B at group 0: model needs 4 cores but group 0 has 2 (nc0-nc1)
        error: F at group 4: group 4 does not exist; the process has 4 groups
        hint: groups come from CORRAL_GROUP_SIZES (NEURONCORE_GROUP_SIZES)
    "#]],
    );
}

#[test]
fn least_used_defaults_spread_and_fill() {
    // Later default loads go to the least-used cores, wrapping once every core has one.
    let loads: Vec<(&str, usize, Where)> = ["a", "b", "c", "d", "e"].iter().map(|m| (*m, 1, Where::Auto)).collect();
    check(
        4,
        &[],
        &loads,
        expect![[r#"
        core    nc0  nc1  nc2  nc3
        a[0]    [==]
        e[0]    [==]
        b[0]         [==]
        c[0]              [==]
        d[0]                   [==]
        shared   ^^
        warning: e shares nc0 with a: executions there take turns and each change of model is a switch
    "#]],
    );
    // A count without a start goes to the least-used position aligned to K.
    check(
        6,
        &[],
        &[("a", 2, at(0)), ("b", 2, Where::Cores { start: None, count: Some(4) })],
        expect![[r#"
        core    nc0  nc1  nc2  nc3  nc4  nc5
        a[0]    [=======]
        b[0]              [=======]
        b[1]                        [=======]
    "#]],
    );
}

#[test]
fn bad_requests_fail_before_anything_is_placed() {
    let cases = [
        ("zero count", Where::from_neuron(0, 0)),
        ("count below -1", Where::from_neuron(0, -2)),
        ("start below -1", Where::from_neuron(-5, -1)),
    ];
    let mut out = String::new();
    for (what, result) in cases {
        out += &format!("{what}: {}\n", result.expect_err("invalid"));
    }
    let layout = Layout::new(4, &[]);
    for (k, at) in [
        (2, at_count(0, 1)),
        (1, at_count(0, 5)),
        (1, at(4)),
        (2, at(3)),
        (2, at_count(1, 4)),
        (5, Where::Auto),
        (0, Where::Auto),
    ] {
        out += &format!("K={k} {at}: {}\n", layout.place("m", k, &at).expect_err("invalid"));
    }
    expect![[r#"
        zero count: nc_count 0 is not valid: use -1 for one instance, or a count of at least the model's cores
        count below -1: nc_count -2 is not valid: use -1 or a positive count
        start below -1: start_nc -5 is not valid: use -1 or a core index
        K=2 start_nc=0 nc_count=1: nc_count 1 is below the model's 2 cores per instance
        K=1 start_nc=0 nc_count=5: nc_count 5 is above the process's 4 cores
        K=1 start_nc=4 nc_count=-1: start nc4 is outside the process cores nc0-nc3
        K=2 start_nc=3 nc_count=-1: model needs 2 cores from nc3, process has nc0-nc3
        K=2 start_nc=1 nc_count=4: model needs 4 cores from nc1, process has nc0-nc3
        K=5 least-used cores: model needs 5 cores per instance, process has 4 (nc0-nc3)
        K=0 least-used cores: a model needs at least 1 core per instance
    "#]]
    .assert_eq(&out);
    assert_eq!(Where::from_neuron(-1, -1), Ok(Where::Auto));
    assert_eq!(Where::from_neuron(2, 3), Ok(at_count(2, 3)));
}

#[test]
fn unloading_frees_cores_for_the_next_default_load() {
    let mut layout = Layout::new(2, &[]);
    for model in ["a", "b"] {
        let placement = layout.place(model, 1, &Where::Auto).expect("fits");
        layout.commit(&placement);
    }
    layout.remove("a");
    let placement = layout.place("c", 1, &Where::Auto).expect("fits");
    assert_eq!(placement.instances[0].first, 0);
    assert_eq!(placement.warning(), None);
}

#[test]
fn cores_that_left_the_process_take_no_new_placement() {
    // nc0 and nc2 left the cpuset: the default and multicore avoid them, naming one fails.
    let mut layout = Layout::new(4, &[]);
    layout.set_gone(0);
    layout.set_gone(2);
    let auto = layout.place("a", 1, &Where::Auto).expect("a core is left");
    assert_eq!(auto.instances, [corral_placement::CoreSpan::new(1, 1)]);
    let multicore = layout.place("m", 1, &Where::Multicore).expect("two cores are left");
    assert_eq!(multicore.instances, [corral_placement::CoreSpan::new(1, 1), corral_placement::CoreSpan::new(3, 1)]);
    let named = layout.place("n", 2, &at(1)).expect_err("nc2 is gone");
    expect!["nc2 left this process's cpuset; place the model on the cores it still has"].assert_eq(&named.to_string());
    // nc2 comes back and a fifth core joins: both take placements again.
    layout.set_back(2);
    assert_eq!(layout.add_core(), 4);
    let multicore = layout.place("m", 1, &Where::Multicore).expect("four cores are left");
    let starts: Vec<usize> = multicore.instances.iter().map(|s| s.first).collect();
    assert_eq!(starts, [1, 2, 3, 4]);
    layout.place("n", 2, &at(1)).expect("nc1-nc2 are the process's again");
}

#[test]
fn the_svg_core_map_says_shared_in_words_and_shape_not_hue_alone() {
    let mut layout = Layout::new(3, &[]);
    for (model, k, start) in [("a", 2, 0), ("b", 1, 1)] {
        let placement = layout.place(model, k, &at(start)).expect("fits");
        layout.commit(&placement);
    }
    let svg = layout.svg();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "{svg}");
    assert_eq!(svg.matches("<rect").count(), 3 + 2, "3 cores and 2 bars: {svg}");
    assert_eq!(svg.matches("<title>nc1 shared</title>").count(), 1, "{svg}");
    assert_eq!(svg.matches("fill=\"url(#shared)\"").count(), 1, "the shared cell is hatched: {svg}");
    assert_eq!(svg.matches("(shares a core)").count(), 2, "both bars on nc1 say so: {svg}");
    assert_eq!(svg.matches("stroke-dasharray").count(), 2, "and are dashed: {svg}");
    // A name is text, never markup.
    let mut odd = Layout::new(1, &[]);
    let placement = odd.place("<x&y>", 1, &Where::Auto).expect("fits");
    odd.commit(&placement);
    assert!(odd.svg().contains("&lt;x&amp;y&gt;[0]"), "{}", odd.svg());
}
