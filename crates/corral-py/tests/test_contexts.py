"""Placement contexts are per thread and per asyncio task, nest, and restore the outer one on
exceptions (Neuron's are process-global and not thread-safe)."""

import asyncio
import threading

import pytest

import corral
from conftest import sim_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return sim_model(tmp_path_factory.mktemp("models"), "tiny", latency_ms=1)


def test_two_threads_with_different_contexts_at_once(model_dir):
    barrier = threading.Barrier(2)
    placed = {}

    def load_at(start):
        with corral.neuron_cores_context(start_nc=start):
            barrier.wait()  # both contexts are active at the same time
            placed[start] = corral.load(model_dir)
            barrier.wait()

    threads = [threading.Thread(target=load_at, args=(start,)) for start in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert placed[0].instances == [(0,)] and placed[1].instances == [(1,)]


def test_contexts_nest_and_restore(model_dir):
    with corral.neuron_cores_context(start_nc=1):
        with corral.multicore_context():
            inner = corral.load(model_dir)
        outer = corral.load(model_dir)
    assert inner.instances == [(0,), (1,)]
    assert outer.instances == [(1,)]


def test_an_exception_inside_a_context_restores_the_outer_one(model_dir):
    with corral.neuron_cores_context(start_nc=1):
        with pytest.raises(RuntimeError, match="boom"):
            with corral.neuron_cores_context(start_nc=0, nc_count=2):
                raise RuntimeError("boom")
        after = corral.load(model_dir)
    assert after.instances == [(1,)]


def test_asyncio_tasks_keep_their_own_contexts(model_dir):
    async def load_at(start):
        with corral.neuron_cores_context(start_nc=start):
            await asyncio.sleep(0.01)  # the other task enters its context meanwhile
            return corral.load(model_dir).instances

    async def main():
        return await asyncio.gather(load_at(1), load_at(0))

    assert asyncio.run(main()) == [[(1,)], [(0,)]]


def test_load_takes_an_mxnet_style_ctx(model_dir):
    assert corral.load(model_dir, ctx=corral.neuron(1)).instances == [(1,)]
    assert repr(corral.neuron(1)) == "neuron(1)"


@pytest.mark.parametrize("start, count, message", [
    (-1, 0, "nc_count 0 is not valid: use -1 for one instance, or a count of at least the model's cores"),
    (-1, -2, "nc_count -2 is not valid: use -1 or a positive count"),
    (-3, -1, "start_nc -3 is not valid: use -1 or a core index"),
])
def test_bad_contexts_are_refused_at_once(start, count, message):
    with pytest.raises(corral.PlacementError) as error:
        corral.neuron_cores_context(start_nc=start, nc_count=count)
    assert str(error.value) == message
    assert isinstance(error.value, ValueError)


def test_counts_past_the_process_fail_at_load(model_dir):
    with pytest.raises(corral.PlacementError, match=r"nc_count 3 is above the process's 2 cores"):
        with corral.neuron_cores_context(start_nc=0, nc_count=3):
            corral.load(model_dir)
