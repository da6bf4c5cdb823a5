"""The pod-spec field executions are generated from the field spec (kaudit_elk.events.codegen): the
committed files must be what the spec generates, and a rule the generators cannot express is refused
with the row named. What the generated code computes is held to each row by test_spec_rows.py (Python,
native) and tests/engine/test_spec_rows_engine.py (the engine's pipeline)."""

from __future__ import annotations

import dataclasses

import pytest

from kaudit_elk.events import codegen
from kaudit_elk.events import fieldspec as fs


@pytest.mark.parametrize("rel", sorted(codegen.render_all()))
def test_generated_file_equals_committed(rel: str) -> None:
    path = codegen.ROOT / rel
    assert path.exists(), f"{rel} is missing; run: {codegen.COMMAND}"
    assert path.read_text(encoding="utf-8") == codegen.render_all()[rel], (
        f"{rel} differs from what kaudit_elk/events/fieldspec.py generates; run: {codegen.COMMAND}")


def test_generated_files_say_how_they_are_made() -> None:
    for rel, text in codegen.render_all().items():
        first = text.splitlines()[0]
        assert "do not edit" in first and codegen.COMMAND in first, rel


def test_check_names_a_stale_file(tmp_path: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]) -> None:
    for rel, text in codegen.render_all().items():
        target = tmp_path / rel  # type: ignore[operator]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    stale = tmp_path / codegen.RUST_OUT  # type: ignore[operator]
    stale.write_text(stale.read_text(encoding="utf-8").replace("allowPrivilegeEscalation", "x"), encoding="utf-8")
    assert codegen.stale(tmp_path) == [codegen.RUST_OUT]  # type: ignore[arg-type]


def test_every_pod_field_is_generated() -> None:
    pod_rows = [f.name for f in fs.FIELDS if f.name.startswith("kaudit.pod.")]
    assert [f.name for f in fs.POD_FIELDS] == pod_rows and len(pod_rows) >= 11
    assert all(not f.generated and f.by for f in fs.FIELDS if not f.name.startswith("kaudit.pod.")), \
        "a hand-written row names its extractor (by=...)"


def test_every_generated_field_appears_in_all_three_outputs() -> None:
    files = codegen.render_all()
    for row in fs.POD_FIELDS:
        key = row.name.removeprefix("kaudit.pod.")
        assert f'"{key}"' in files[codegen.PYTHON_OUT] and f'"{key}"' in files[codegen.RUST_OUT], row.name
        assert f"'{key}'" in files[codegen.PAINLESS_OUT], row.name


@pytest.mark.parametrize("change, message", [
    ({"reducer": "max"}, "reducer 'max' is not one of any, unique, first"),
    ({"value": "float"}, "value 'float' is not one of"),
    ({"sources": ("node:hostPID",)}, "source 'node:hostPID' is not <pod|container>:<dotted path>"),
    ({"sources": ("pod:host-PID",)}, "has a step that is neither a key nor []"),
    ({"type": "keyword"}, "reducer 'any' goes with value 'true' and type boolean"),
    ({"name": "kaudit.pod.a.b"}, "a generated field is named kaudit.pod.<identifier>"),
])
def test_a_rule_the_generators_cannot_express_is_refused(change: dict[str, object], message: str) -> None:
    row = dataclasses.replace(fs.POD_FIELDS[0], **change)  # type: ignore[arg-type]
    with pytest.raises(codegen.SpecError) as err:
        codegen.render_all((row,))
    assert message in str(err.value) and "field spec row" in str(err.value)


def test_check_command_passes_on_the_committed_tree() -> None:
    assert codegen.main(["--check"]) == 0
