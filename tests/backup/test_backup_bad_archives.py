"""Damaged, truncated, altered and foreign archives: ``verify`` and ``restore`` reject each
with its reason before anything is written, and the target stays as it was."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from backup_drill import fill, raw_rows

from kronika import NewEvent, open_store
from kronika.errors import ValidationError
from kronika.ops import backup as ops


@pytest.fixture(scope="module")
def good_archive(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The bytes of a valid archive of a small store with every kind of row."""
    import asyncio

    folder = tmp_path_factory.mktemp("good")

    async def make() -> bytes:
        await fill(f"sqlite:///{folder / 'src.db'}", events=300)
        await ops.backup(open_store(f"sqlite:///{folder / 'src.db'}"), folder / "good.kar")
        return (folder / "good.kar").read_bytes()

    return asyncio.run(make())


def _names(folder: Path) -> list[str]:
    """The files in ``folder``, sorted."""
    return sorted(p.name for p in folder.iterdir())


def _lines(archive: bytes) -> list[bytes]:
    return gzip.decompress(archive).splitlines(keepends=True)


def _pack(lines: list[bytes]) -> bytes:
    return gzip.compress(b"".join(lines), compresslevel=1)


def _edit_json(index: int, change: Callable[[dict[str, object]], None]) -> Callable[[bytes], bytes]:
    def edit(archive: bytes) -> bytes:
        lines = _lines(archive)
        value = orjson.loads(lines[index])
        change(value)
        lines[index] = orjson.dumps(value) + b"\n"
        return _pack(lines)

    return edit


def _flip_middle(archive: bytes) -> bytes:
    middle = len(archive) // 2
    return archive[:middle] + bytes([archive[middle] ^ 0xFF]) + archive[middle + 1 :]


def _edit_row(archive: bytes) -> bytes:
    lines = _lines(archive)
    index = next(i for i, line in enumerate(lines) if b"OrderPaid" in line)
    lines[index] = lines[index].replace(b"OrderPaid", b"OrderPain", 1)
    return _pack(lines)


def _trailer_sha(value: dict[str, object]) -> None:
    value["trailer"]["sha256"] = "0" * 64  # type: ignore[index]


def _trailer_counts(value: dict[str, object]) -> None:
    value["trailer"]["sections"]["events"] += 1  # type: ignore[index]


def _version(value: dict[str, object]) -> None:
    value["format_version"] = 2


DAMAGE: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "truncated": (lambda a: a[: len(a) // 2], "truncated"),
    "cut before the trailer": (lambda a: _pack(_lines(a)[:-1]), "ends before its trailer"),
    "last line cut short": (lambda a: _pack([*_lines(a)[:-1], b'{"trai']), "cut short"),
    "flipped byte": (_flip_middle, "corrupt|altered|damaged|truncated"),
    "edited row": (_edit_row, "does not match the SHA-256"),
    "edited trailer checksum": (_edit_json(-1, _trailer_sha), "does not match the SHA-256"),
    "edited trailer counts": (_edit_json(-1, _trailer_counts), "trailer disagrees"),
    "newer format version": (_edit_json(0, _version), "format version is 2"),
    "data after the trailer": (lambda a: a + gzip.compress(b"{}\n"), "after its trailer"),
    "not gzip": (lambda a: b"id,name\n1,x\n", "not gzip-compressed"),
    "empty": (lambda a: b"", "empty"),
    "gzip of something else": (lambda a: gzip.compress(b'{"hello": 1}\n'), "not a Kronika"),
    "not JSON": (lambda a: gzip.compress(b"<html>\n"), "not valid JSON"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
async def test_a_bad_archive_is_rejected_with_its_reason_and_nothing_is_written(
    tmp_path: Path, good_archive: bytes, damage: str
) -> None:
    change, reason = DAMAGE[damage]
    archive = tmp_path / "bad.kar"
    archive.write_bytes(change(good_archive))
    with pytest.raises(ValidationError, match=reason) as raised:
        ops.verify(archive)
    assert str(archive) in raised.value.message

    fresh = tmp_path / "fresh.db"
    with pytest.raises(ValidationError, match=reason):
        await ops.restore(open_store(f"sqlite:///{fresh}"), archive)
    assert _names(tmp_path) == ["bad.kar"]

    held = tmp_path / "held.db"
    async with open_store(f"sqlite:///{held}") as store:
        await store.append("kept-1", [NewEvent("Kept", {"n": 1})])
    before = await raw_rows(open_store(f"sqlite:///{held}"))
    with pytest.raises(ValidationError, match=reason):
        await ops.restore(open_store(f"sqlite:///{held}"), archive, merge=True)
    assert await raw_rows(open_store(f"sqlite:///{held}")) == before


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="no such archive file"):
        ops.verify(tmp_path / "nope.kar")


def test_a_good_archive_verifies_and_summarises(tmp_path: Path, good_archive: bytes) -> None:
    archive = tmp_path / "good.kar"
    archive.write_bytes(good_archive)
    summary = ops.verify(archive)
    assert summary.bytes == len(good_archive)
    assert summary.format_version == 1 and summary.engine == "sqlite"
    assert summary.counts["events"] == summary.events > 0
    assert summary.last_position == summary.high_water
    assert summary.lows["default"] == 1
