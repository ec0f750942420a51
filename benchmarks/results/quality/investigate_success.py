# Where REDs does not win (see findings.md): success vs path length, ridge, nullspace beta.
# Runs on the TUNING starts of the committed run (seed 1), never on the test starts.
# Usage: nice -n 10 python benchmarks/results/quality/investigate_success.py
import time

import numpy as np

from reds_jax.evaluation import runner as evaluate

exps = {e.name: e for e in evaluate.rooms_oracle_suite(size=64)}
for ename in ["frequency", "sofa_pixels"]:
    e = exps[ename]
    for steps in (12, 24):
        cfg = evaluate.Config(n_test=8, n_tune=8, k=1, steps=steps, seed=1)
        run = evaluate._Runner(e, cfg, print)
        trials = [("reds-local", dict(step_size=0.25, ridge=1e-4))]
        if steps == 12:
            trials += [
                ("reds-local", dict(step_size=0.25, ridge=1e-6)),
                ("nullspace-local", dict(step_size=0.25, beta_fix=0.999)),
                ("nullspace-local", dict(step_size=0.25, beta_fix=0.9999)),
            ]
        for name, st in trials:
            t = time.time()
            m = run.measure(run.paths(name, st, run.z_tune))
            s = run.score(m)
            mx = np.max(m["change"], axis=-1)
            # saturation: change over the last quarter of the path, for paths that failed
            last = m["change"][..., -1] - m["change"][..., -1 - steps // 4]
            fail = mx < e.delta
            print(
                f"{ename} T={steps} {name} {st}: drift@δ {s.median:.3f} success {s.success:.2f} "
                f"max change median {np.median(mx):.2f}; failed paths' last-quarter gain {np.median(last[fail]) if fail.any() else float('nan'):.3f} ({time.time() - t:.0f}s)",
                flush=True,
            )
