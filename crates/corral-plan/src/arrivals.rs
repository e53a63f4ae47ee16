//! Arrival times for open-loop load, the same in `corral bench --rate` and
//! `corral plan --predict` (SPEC §12): each model's inter-arrival gaps are Gamma-distributed
//! with mean 1/rate and coefficient of variation `cv` (1 is Poisson, 0 evenly spaced, above 1
//! burstier), drawn from one stream per model, the streams numbered in model-name order.
//!
//! The generator is named and written here so a seed means the same arrivals on every build:
//! xoshiro256++ (Blackman and Vigna), seeded by SplitMix64 from `seed` and the stream's
//! number; uniform doubles from its top 53 bits; normal variates by Marsaglia's polar method;
//! Gamma variates by Marsaglia and Tsang's method (shape below 1 boosted by `U^(1/shape)`).

/// xoshiro256++, seeded by SplitMix64.
#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
    /// The polar method makes normal variates in pairs; the second waits here.
    spare_normal: Option<f64>,
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Rng {
    /// Stream `stream` of generator `seed`.
    pub fn new(seed: u64, stream: u64) -> Rng {
        let mut state = seed ^ stream.wrapping_mul(0xd1b5_4a32_d192_ed03);
        let s = [splitmix64(&mut state), splitmix64(&mut state), splitmix64(&mut state), splitmix64(&mut state)];
        Rng { s, spare_normal: None }
    }

    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// A uniform double in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A standard normal variate.
    pub fn normal(&mut self) -> f64 {
        if let Some(spare) = self.spare_normal.take() {
            return spare;
        }
        loop {
            let u = 2.0 * self.uniform() - 1.0;
            let v = 2.0 * self.uniform() - 1.0;
            let s = u * u + v * v;
            if s > 0.0 && s < 1.0 {
                let factor = (-2.0 * s.ln() / s).sqrt();
                self.spare_normal = Some(v * factor);
                return u * factor;
            }
        }
    }

    /// A Gamma variate of `shape` and scale 1.
    pub fn gamma(&mut self, shape: f64) -> f64 {
        if shape < 1.0 {
            let boost = (1.0 - self.uniform()).powf(1.0 / shape);
            return self.gamma(shape + 1.0) * boost;
        }
        let d = shape - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        loop {
            let x = self.normal();
            let v = 1.0 + c * x;
            if v <= 0.0 {
                continue;
            }
            let v = v * v * v;
            let u = 1.0 - self.uniform();
            if u < 1.0 - 0.0331 * x * x * x * x || u.ln() < 0.5 * x * x + d * (1.0 - v + v.ln()) {
                return d * v;
            }
        }
    }
}

/// The gap before the next arrival at `rate` calls per second with coefficient of variation
/// `cv`, in seconds.
pub fn gap(rng: &mut Rng, rate: f64, cv: f64) -> f64 {
    if cv <= 0.0 {
        return 1.0 / rate;
    }
    let shape = 1.0 / (cv * cv);
    rng.gamma(shape) / (shape * rate)
}

/// Each model's arrival times (seconds from the start, ascending, all below `duration`), for
/// `rates` given in model-name order (rate 0: no calls), stream `i` for the `i`-th model.
pub fn schedule(rates: &[f64], cv: f64, seed: u64, duration: f64) -> Vec<Vec<f64>> {
    rates
        .iter()
        .enumerate()
        .map(|(stream, &rate)| {
            let mut times = Vec::new();
            if rate > 0.0 {
                let mut rng = Rng::new(seed, stream as u64);
                let mut t = gap(&mut rng, rate, cv);
                while t < duration {
                    times.push(t);
                    t += gap(&mut rng, rate, cv);
                }
            }
            times
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moments(gaps: &[f64]) -> (f64, f64) {
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        let var = gaps.iter().map(|g| (g - mean) * (g - mean)).sum::<f64>() / gaps.len() as f64;
        (mean, var.sqrt() / mean)
    }

    #[test]
    fn gaps_have_the_asked_mean_and_variation() {
        for cv in [0.0, 0.5, 1.0, 4.0] {
            let mut rng = Rng::new(7, 0);
            let gaps: Vec<f64> = (0..200_000).map(|_| gap(&mut rng, 100.0, cv)).collect();
            let (mean, measured_cv) = moments(&gaps);
            assert!((mean - 0.01).abs() < 0.0005, "cv {cv}: mean {mean}");
            assert!((measured_cv - cv).abs() < 0.05 * cv.max(1.0), "cv {cv}: measured {measured_cv}");
        }
    }

    #[test]
    fn a_seed_gives_the_same_arrivals_and_streams_differ() {
        let a = schedule(&[50.0, 0.0, 50.0], 1.0, 3, 2.0);
        assert_eq!(a, schedule(&[50.0, 0.0, 50.0], 1.0, 3, 2.0));
        assert!(a[1].is_empty(), "rate 0: no calls");
        assert_ne!(a[0], a[2], "each model has its own stream");
        assert_ne!(a, schedule(&[50.0, 0.0, 50.0], 1.0, 4, 2.0));
        // The first model's arrivals do not depend on the others' rates.
        assert_eq!(a[0], schedule(&[50.0, 10.0, 0.0], 1.0, 3, 2.0)[0]);
        let even = schedule(&[4.0], 0.0, 0, 1.0);
        assert_eq!(even, [[0.25, 0.5, 0.75]]);
    }
}
