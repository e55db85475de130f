"""docs/configuration.md and docs/cli.md are generated from the code; they must match what it generates now.

Regenerate with: .venv/bin/python -m tunesmith.reference
"""

from tunesmith.reference import DOCS, write_all


def test_generated_references_are_up_to_date(tmp_path):
    for generated in write_all(tmp_path):
        committed = DOCS / generated.name
        assert committed.read_text(encoding="utf-8") == generated.read_text(encoding="utf-8"), (
            f"{committed} is stale: run `python -m tunesmith.reference`"
        )


def test_every_config_key_and_command_is_documented():
    from tunesmith.cli import build_parser
    from tunesmith.train.config import TrainConfig

    config_text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    assert all(f"`{name}`" in config_text for name in TrainConfig.model_fields)
    cli_text = (DOCS / "cli.md").read_text(encoding="utf-8")
    commands = build_parser()._subparsers._group_actions[0].choices
    assert all(f"## tunesmith {name}" in cli_text for name in commands)
