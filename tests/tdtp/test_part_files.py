"""Part and summary file names: the exporter's names read back as the importer sorts them."""

from __future__ import annotations

from tdtp.part_files import part_file_name, part_files_glob, split_part_file_name, summary_file_name


def test_go_names_for_batch_streamed_and_lone_parts() -> None:
    assert part_file_name("users.tdtp.xml", 2, 3) == "users.tdtp_part_2_of_3.xml"
    assert part_file_name("users.tdtp.xml", 12, 0) == "users.tdtp_part_12.xml"  # streamed: no total
    assert part_file_name("users.tdtp.xml", 1, 1) == "users.tdtp.xml"  # a lone part keeps the name
    assert part_file_name("users", 2, 3) == "users_part_2_of_3.xml"
    assert summary_file_name("users.tdtp.xml") == "users.tdtp_summary.json"
    assert summary_file_name("users") == "users_summary.json"


def test_names_read_back_to_stem_and_number() -> None:
    for total in (0, 3, 12):
        for number in (1, 2, 10):
            name = part_file_name("users.tdtp.xml", number, total)
            assert split_part_file_name(name) == ("users.tdtp", number)
    assert split_part_file_name("users.tdtp.xml") == ("users.tdtp.xml", 0)
    assert split_part_file_name("users.tdtp_summary.json") == ("users.tdtp_summary.json", 0)


def test_glob_covers_every_numbered_part(tmp_path) -> None:
    names = [part_file_name("t.tdtp.xml", n, t) for n, t in ((1, 2), (2, 2), (1, 0), (7, 0))]
    for name in [*names, "t.tdtp.xml", "other_part_1.xml"]:
        (tmp_path / name).write_bytes(b"")
    assert sorted(p.name for p in tmp_path.glob(part_files_glob("t.tdtp.xml"))) == sorted(names)
