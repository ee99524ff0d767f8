"""Training methods, one module each (``sft``, ``reward``, ``dpo``, ``grpo``) with a ``Config``
on the shared ``TrainConfig``, a ``preflight`` run before anything is queued, ``run`` (the job:
launches the training child) and ``train`` (what the child runs); ``merge`` exports adapters."""
