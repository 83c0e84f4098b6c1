"""dts/bindings/gcma,area.yaml with dtschema: our DT passes, bad nodes do not."""

from pathlib import Path

from gcma import dt, paths


def test_emulated_target_overlay_is_valid() -> None:
    assert dt.validate() == []


def test_schema_violations_are_reported(tmp_path: Path) -> None:
    bad = tmp_path / "bad.dtso"
    bad.write_text("""/dts-v1/;
/plugin/;
&{/} {
\t#address-cells = <2>;
\t#size-cells = <2>;
\treserved-memory {
\t\t#address-cells = <2>;
\t\t#size-cells = <2>;
\t\tranges;
\t\tm: m@70000000 { reg = <0x0 0x70000000 0x0 0x100000>; };
\t};
\tgcma-area-a {
\t\tcompatible = "gcma,area";
\t\tmemory-region = <&m>;
\t\tcolour = "blue";
\t};
\tgcma-area-b {
\t\tcompatible = "gcma,area";
\t\tlabel = "b";
\t};
};
""")
    problems = dt.validate([bad])
    text = "\n".join(problems)
    assert "gcma-area-a (gcma,area): 'label' is a required property" in text
    assert "gcma-area-a (gcma,area): 'colour' does not match" in text
    assert "gcma-area-b (gcma,area): 'memory-region' is a required property" in text


def test_bindings_folder_has_our_schema() -> None:
    assert (paths.PROJECT / "dts" / "bindings" / "gcma,area.yaml").exists()
