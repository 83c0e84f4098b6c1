"""dts/bindings/gcma,area.yaml with dtschema: our DT passes, bad nodes do not."""

from pathlib import Path

from gcma import paths
from gcma.build import dt


def test_emulated_target_overlay_is_valid() -> None:
    assert dt.validate() == []


def _overlay(path: Path, regions: str, nodes: str = "") -> Path:
    """An overlay with ``regions`` under /reserved-memory and ``nodes`` under /."""
    path.write_text(f"""/dts-v1/;
/plugin/;
&{{/}} {{
\t#address-cells = <2>;
\t#size-cells = <2>;
\treserved-memory {{
\t\t#address-cells = <2>;
\t\t#size-cells = <2>;
\t\tranges;
{regions}
\t}};
{nodes}
}};
""")
    return path


def test_schema_violations_are_reported(tmp_path: Path) -> None:
    bad = _overlay(tmp_path / "bad.dtso",
                   "\t\tm: m@70000000 { reg = <0x0 0x70000000 0x0 0x100000>; };", """\
\tgcma-area-a {
\t\tcompatible = "gcma,area";
\t\tmemory-region = <&m>;
\t\tcolour = "blue";
\t};
\tgcma-area-b {
\t\tcompatible = "gcma,area";
\t\tlabel = "b";
\t};""")
    problems = dt.validate([bad])
    text = "\n".join(problems)
    assert "gcma-area-a (gcma,area): 'label' is a required property" in text
    assert "gcma-area-a (gcma,area): 'colour' does not match" in text
    assert "gcma-area-b (gcma,area): 'memory-region' is a required property" in text


def test_bindings_folder_has_our_schema() -> None:
    assert (paths.PROJECT / "dts" / "bindings" / "gcma,area.yaml").exists()


def test_only_the_pending_guarantee_property_is_let_through(tmp_path: Path) -> None:
    """dt-schema does not know "guarantee" yet: alone it is accepted, but
    another unknown property on the same node is still reported."""
    pools = _overlay(tmp_path / "pools.dtso", """\
\t\tgood { compatible = "shared-dma-pool"; reusable; guarantee; size = <0x0 0x400000>; };
\t\tbad { compatible = "shared-dma-pool"; reusable; guarantee; colour = "red";
\t\t      size = <0x0 0x400000>; };""")
    problems = dt.validate([pools])
    assert problems and all(p.startswith("bad (shared-dma-pool): ") for p in problems), problems
    assert any("('colour', 'guarantee' were unexpected)" in p for p in problems), problems
    assert dt.validate([paths.PROJECT / "dts" / "virt-cma-guarantee.dtso"]) == []
