"""The training side: pretraining-corpus preparation and pretraining, instruction tuning, weights.

- :mod:`.pretrain`: raw documents -> indexed token dataset (``corpus``, ``prepare``,
  ``indexed_dataset``), the run config (``config``), the data order (``mixing``), the run (``run``).
- :mod:`.sft`: instruction tuning: ``config``, ``data``, ``model``, ``loss``, ``trainer``,
  ``evaluation``, the run (``run``).
- :mod:`.weights`: checkpoint reading (``io``) and shard writing (``shards``), the weight diff
  (``diff``), its ``manifest`` and recovery (``recover``), LoRA merging (``lora``).
- Shared by the recipes: :mod:`.common` (run configs, DeepSpeed presets, resume) and
  :mod:`.deepspeed_setup` (DeepSpeed start-up without needless op builds or endless waits).

The commands around them are in :mod:`deepke_llm.commands` (``pretrain``, ``train``, ``weights``).
"""
