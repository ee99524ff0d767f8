"""Training methods, one module each (the ``train.*`` kinds of ``workbench.kinds``), all of one
shape: ``Config`` on the shared ``TrainConfig``; ``read_rows`` and ``ROWS`` (how it reads its data
file); ``NEEDS`` (what it needs, for the Train tab); ``WATCH`` (its curves); ``memory_shape`` (what
it puts through the model and the other models it loads); ``preflight`` (the checks before
anything is queued); ``run`` (the job: the training child) and ``train`` (what the child runs,
through ``job.TrainJob``: the models, the TRL arguments, ``fit``, the output). The methods that
learn from preference pairs share ``preference``, the online ones ``online``; ``merge`` exports
adapters."""
