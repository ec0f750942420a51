# Rooms GAN (see findings.md): why REDs' ridge search picks λ = 1e-2 there. Longer paths at
# smaller ridges, on the TUNING starts of the committed run (seed 1, 4 starts), never the test starts.
# Usage: nice -n 10 python benchmarks/results/quality/investigate_gan.py
import time

import numpy as np

from reds_jax.evaluation import runner as evaluate

exps = {e.name: e for e in evaluate.rooms_gan_suite()}
for ename in ["gan_sofa_look", "gan_frequency"]:
    e = exps[ename]
    cfg = evaluate.Config(n_test=4, n_tune=4, k=1, steps=32, seed=1)
    run = evaluate._Runner(e, cfg, print)
    for ridge in (1e-4, 1e-3, 1e-2):
        t = time.time()
        m = run.measure(run.paths("reds-local", dict(step_size=0.25, ridge=ridge), run.z_tune))
        s = run.score(m)
        mx = np.max(m["change"], axis=-1)
        print(
            f"{ename} T=32 ε=0.25 λ={ridge:g}: drift@δ {s.median:.3f} success {s.success:.2f} "
            f"max change median {np.median(mx):.2f} ({time.time() - t:.0f}s)",
            flush=True,
        )
