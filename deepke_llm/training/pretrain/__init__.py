"""Pretraining: ``deepke-llm pretrain prepare|merge|inspect|run``.

``corpus`` (source readers, greedy packing) and ``prepare`` (the parallel pipeline) build an
``indexed_dataset``; ``config`` (PretrainConfig), ``mixing`` (the run's data order) and ``run``
(:func:`.run.run_pretraining`) train on it.
"""
