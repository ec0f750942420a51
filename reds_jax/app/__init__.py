"""``reds-jax app``: an interactive REDs explorer in the browser (``pip install "reds-jax[app]"``).

:mod:`reds_jax.app.explorer` holds the logic (no web framework: models, compiled traversals,
validation, exports); :mod:`reds_jax.app.ui` builds the Gradio page and the ``reds-jax app``
command (:func:`reds_jax.app.ui.main`).
"""
