"""Training: fine-tune, keep the best weights, calibrate them. :func:`training.train.run.run` is the entry.

The stages, in the order a run goes through them:

* :mod:`~training.train.startup`: processes (torchrun), threads, seeds, the network a config asks for.
* :mod:`~training.train.loaders`: the training loader and the validation inputs (``load_data``).
* :mod:`~training.train.optim`: AdamW, the cosine schedule, EMA and DDP, together a ``Learner``.
* :mod:`~training.train.losses`: authenticity, flag and map losses.
* :mod:`~training.train.loop`: ``train_one_epoch`` and ``validate``.
* :mod:`~training.train.state`: ``RunState``, the files of a run, checkpoints and exact resume.
* :mod:`~training.train.calibrate`: the end-of-training calibration of ``best.pt``
  (the fitting itself is :mod:`~training.train.calibration`).
* :mod:`~training.train.run`: ``run()``, which strings them together like torchvision's ``main``.

Shared helpers: :mod:`~training.train.inference` (batched forward passes), :mod:`~training.train.progress`,
:mod:`~training.train.runtime` (CPU settings), :mod:`~training.train.tracking` (MLflow).
"""
