"""Instruction tuning (``deepke-llm train sft``); the recipe is :func:`.run.run_sft`.

``config`` (SftConfig), ``data`` (records, tokenization, packing, collation), ``model`` (base model
+ LoRA), ``loss`` (response-only LM head), ``trainer`` (Trainer and callbacks), ``evaluation``
(generation-based eval), ``run`` (the steps, top to bottom).
"""
