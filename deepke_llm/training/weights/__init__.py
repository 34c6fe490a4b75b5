"""Weight diff, recovery and LoRA merging (``deepke-llm weights``), streamed shard by shard.

``io`` (read checkpoints a block of rows at a time; dtypes, sizes, :class:`.io.WeightsError`),
``shards`` (write safetensors shards tensor by tensor; output directories), ``diff`` (the diff
format and :func:`.diff.diff_weights`), ``manifest`` (its validation), ``recover``
(:func:`.recover.recover_weights`), ``lora`` (:func:`.lora.merge_lora`).
"""
