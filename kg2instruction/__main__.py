"""``python -m kg2instruction ...``: the KG2Instruction commands."""

from deepke_llm.commands.kg2instruction import main

main(prog_name="kg2instruction")
