"""machinery/errors.py: the one-line RunError a damaged or unwritable file becomes."""
import errno

import pytest

from machinery import errors


@pytest.mark.parametrize("content, reason", [(b"", "Expecting value"),
                                             (b"{\"step\": 1", "Expecting"),
                                             (b"\xff\xfe\x00", "codec can't decode"),
                                             (b"[1, 2]", "not the record this program writes")])
def test_a_damaged_record_is_one_line_with_the_remedy(tmp_path, content, reason):
    path = tmp_path / "record.json"
    path.write_bytes(content)
    with pytest.raises(errors.RunError) as error:
        errors.read_saved_record(str(path), "settings", "put back a good copy")
    line = str(error.value)
    assert line.startswith(f"{path}: damaged settings (") and reason in line
    assert line.endswith("); put back a good copy") and "\n" not in line
    assert path.read_bytes() == content  # reading never changes the file


def test_a_missing_record_is_none_and_a_valid_one_is_returned(tmp_path):
    assert errors.read_saved_record(str(tmp_path / "absent.json"), "settings", "-") is None
    (tmp_path / "record.json").write_text('{"value": 0.5}')
    assert errors.read_saved_record(str(tmp_path / "record.json"), "settings", "-") == \
        {"value": 0.5}
    with pytest.raises(errors.RunError, match="not the record"):
        errors.read_saved_record(str(tmp_path / "record.json"), "settings", "-",
                                 is_valid=lambda record: isinstance(record.get("value"), str))


def test_an_unwritable_file_names_the_path_and_what_is_lost(tmp_path):
    def full_disk(path):
        raise OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(errors.RunError) as error:
        errors.write_or_fail(str(tmp_path / "out"), full_disk, unsaved="the grid was not saved")
    assert str(error.value) == (f"cannot write {tmp_path / 'out'} (No space left on device); "
                                "the grid was not saved")
