"""Log files rotated by size, never between the two halves of a line (issue 5; supervisord #749)."""

import os
import random
import stat

import pytest

from occasional.ports.logfile import MAX_BACKUPS, LogFile, LogWriter


def _files(path):
    """Contents of path, path.1, path.2, ... that exist, newest first."""
    found = []
    name = str(path)
    i = 0
    while os.path.exists(name):
        with open(name, "rb") as f:
            found.append(f.read())
        i += 1
        name = f"{path}.{i}"
    return found


def _write(spec, *chunks):
    with LogWriter(spec) as w:
        for chunk in chunks:
            w.write(chunk)


def test_what_is_written_reaches_the_file_byte_for_byte(tmp_path):
    _write(LogFile(str(tmp_path / "out.log")), b"one\n", b"tw", b"o\nthree")
    assert _files(tmp_path / "out.log") == [b"one\ntwo\nthree"]


def test_a_line_that_would_pass_max_bytes_starts_a_new_file_and_the_old_one_becomes_path_1(tmp_path):
    _write(LogFile(str(tmp_path / "out.log"), max_bytes=10), b"aaaa\n", b"bbbb\n", b"cccc\n")
    assert _files(tmp_path / "out.log") == [b"cccc\n", b"aaaa\nbbbb\n"]


def test_one_write_of_many_lines_is_split_between_files_at_a_line_boundary(tmp_path):
    _write(LogFile(str(tmp_path / "out.log"), max_bytes=12), b"aaa\nbbb\nccc\nddd\neee\n")
    assert _files(tmp_path / "out.log") == [b"ddd\neee\n", b"aaa\nbbb\nccc\n"]


def test_a_partial_line_is_continued_in_the_same_file_even_past_max_bytes(tmp_path):
    _write(LogFile(str(tmp_path / "out.log"), max_bytes=10), b"aaaa\nbb", b"bbbbbbbb", b"bb\ncc\n")
    assert _files(tmp_path / "out.log") == [b"cc\n", b"aaaa\nbbbbbbbbbbbb\n"]


def test_a_partial_line_that_does_not_fit_starts_the_next_file(tmp_path):
    _write(LogFile(str(tmp_path / "out.log"), max_bytes=10), b"aaaaaaaa\n", b"bbbb", b"b\n")
    assert _files(tmp_path / "out.log") == [b"bbbbb\n", b"aaaaaaaa\n"]


def test_a_line_longer_than_max_bytes_goes_whole_into_a_file_of_its_own(tmp_path):
    _write(LogFile(str(tmp_path / "out.log"), max_bytes=4), b"ab\n", b"a very long line\n", b"cd\n")
    assert _files(tmp_path / "out.log") == [b"cd\n", b"a very long line\n", b"ab\n"]


def test_rotation_keeps_backups_old_files_newest_in_path_1_and_drops_the_oldest(tmp_path):
    _write(LogFile(str(tmp_path / "out.log"), max_bytes=2, backups=2), b"1\n2\n3\n4\n5\n")
    assert _files(tmp_path / "out.log") == [b"5\n", b"4\n", b"3\n"]


def test_with_no_backups_rotation_starts_the_file_again(tmp_path):
    _write(LogFile(str(tmp_path / "out.log"), max_bytes=4, backups=0), b"1\n2\n3\n4\n5\n")
    assert _files(tmp_path / "out.log") == [b"5\n"]


def test_a_new_writer_appends_and_counts_what_the_file_already_holds(tmp_path):
    spec = LogFile(str(tmp_path / "out.log"), max_bytes=9)
    _write(spec, b"aaaa\n")
    _write(spec, b"bbb\n", b"ccc\n")
    assert _files(tmp_path / "out.log") == [b"ccc\n", b"aaaa\nbbb\n"]


def test_no_file_ever_holds_part_of_a_line_however_the_output_is_cut_into_writes(tmp_path):
    rng = random.Random(5)
    lines = [b"%d:" % i + b"x" * rng.randrange(0, 40) + b"\n" for i in range(400)]
    stream = b"".join(lines)
    chunks, pos = [], 0
    while pos < len(stream):
        n = rng.randrange(1, 90)
        chunks.append(stream[pos : pos + n])
        pos += n
    _write(LogFile(str(tmp_path / "out.log"), max_bytes=100, backups=1000), *chunks)
    files = _files(tmp_path / "out.log")
    assert b"".join(reversed(files)) == stream
    assert [f for f in files if not f.endswith(b"\n") or len(f) > 100 + 42] == []


def test_the_missing_directories_of_the_path_are_created(tmp_path):
    _write(LogFile(str(tmp_path / "logs" / "web" / "out.log")), b"up\n")
    assert _files(tmp_path / "logs" / "web" / "out.log") == [b"up\n"]


def test_a_relative_path_is_made_absolute_against_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert LogFile("logs/out.log").path == str(tmp_path / "logs" / "out.log")


def test_a_log_file_accepts_a_path_object(tmp_path):
    assert LogFile(tmp_path / "out.log").path == str(tmp_path / "out.log")


def test_writing_to_a_closed_writer_raises_naming_the_file(tmp_path):
    w = LogWriter(LogFile(str(tmp_path / "out.log")))
    w.close()
    w.close()
    with pytest.raises(ValueError, match=r"^write to the closed log file '.*out\.log'$"):
        w.write(b"late\n")


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"path": ""}, TypeError, r"^LogFile\(path=''\): the path is not a non-empty string; give a file path"),
        ({"path": 3}, TypeError, r"^LogFile\(path=3\): the path is not a non-empty string"),
        (
            {"path": "logs/"},
            ValueError,
            r"^LogFile\(path='logs/'\) names a directory; give a file path in it, e.g. 'logs/out.log'$",
        ),
        ({"path": "x", "max_bytes": 0}, ValueError, r"^LogFile\(max_bytes=0\) is not a size; use an int of bytes >= 1"),
        ({"path": "x", "max_bytes": 1.5}, ValueError, r"^LogFile\(max_bytes=1.5\) is not a size"),
        ({"path": "x", "max_bytes": True}, ValueError, r"^LogFile\(max_bytes=True\) is not a size"),
        (
            {"path": "x", "backups": -1},
            ValueError,
            r"^LogFile\(backups=-1\) is not a number of old files to keep; use an int >= 0$",
        ),
        (
            {"path": "x", "backups": MAX_BACKUPS + 1},
            ValueError,
            rf"^LogFile\(backups={MAX_BACKUPS + 1}\) is more old files than a log keeps \(at most {MAX_BACKUPS}\); use {MAX_BACKUPS} or fewer",
        ),
    ],
)
def test_a_log_file_with_a_bad_value_is_refused_naming_it(kwargs, error, message):
    with pytest.raises(error, match=message):
        LogFile(**kwargs)


# --------------------------------------------------------------- neighbours (issue 10)


def test_a_new_log_file_is_readable_by_its_owner_and_group_only(tmp_path):
    old = os.umask(0o022)
    try:
        _write(LogFile(str(tmp_path / "out.log")), b"up\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "out.log").st_mode) == 0o640


def test_a_log_file_that_is_a_symlink_is_refused_naming_it_and_its_target_is_not_written(tmp_path):
    target = tmp_path / "elsewhere"
    target.write_bytes(b"precious\n")
    (tmp_path / "out.log").symlink_to(target)
    with pytest.raises(
        OSError,
        match=r"^\[Errno 40\] the log file '.*/out\.log' is a symbolic link; logs are never written through one: remove it, or give its target as the path$",
    ):
        LogWriter(LogFile(str(tmp_path / "out.log")))
    assert target.read_bytes() == b"precious\n"
