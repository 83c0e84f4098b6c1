from gcma.report import parse_kv, table


def test_parse_kv() -> None:
    assert parse_kv("heap=system size=1048576 ok=3 junk") == {
        "heap": "system", "size": "1048576", "ok": "3"}


def test_table_aligns_and_marks_missing() -> None:
    text = table([{"heap": "system", "ok": "3"}, {"heap": "linux,cma"}], ["heap", "ok"])
    assert text.splitlines() == [
        "heap       ok", "---------  --", "system     3 ", "linux,cma  - "]
