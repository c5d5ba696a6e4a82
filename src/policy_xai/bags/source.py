"""Reading a bag: the one reader of policy_xai (BagSource), with the recovery of damaged bags, and
the registration of the bag's own message definitions."""
from __future__ import annotations

import sqlite3
import struct
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional, Sequence

from .common import BagError

MCAP_MAGIC = b"\x89MCAP0\r\n"


@dataclass
class TopicInfo:
    name: str
    msgtype: str
    count: int = 0
    msgdef: Optional[str] = None
    msgdef_format: str = "ros2msg"
    digest: str = ""
    qos: list = field(default_factory=list)
    serialization_format: str = "cdr"


@dataclass
class ReadProblem:
    """Where a damaged bag stops being readable."""

    reason: str
    file: str = ""
    byte_offset: Optional[int] = None  # MCAP: start of the first unreadable record
    file_size: Optional[int] = None
    last_row: Optional[int] = None  # sqlite3: last readable message row id
    last_log_time: Optional[int] = None

    def describe(self, start_ns: Optional[int] = None) -> str:
        where = []
        if self.byte_offset is not None:
            where.append(f"byte {self.byte_offset} of {self.file_size}")
        if self.last_row is not None:
            where.append(f"message row {self.last_row}")
        if self.last_log_time is not None:
            rel = f" ({(self.last_log_time - start_ns) * 1e-9:.3f} s after the start)" if start_ns else ""
            where.append(f"last readable message at log time {self.last_log_time}{rel}")
        if self.last_log_time is None:
            where.append("no message is readable")
        return f"{Path(self.file).name}: {self.reason}" + f" - stops at {', '.join(where)}"


def _storage_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"bag not found: {path}")
    files = []
    meta = path / "metadata.yaml"
    if meta.is_file():
        try:
            import yaml

            info = yaml.safe_load(meta.read_text())["rosbag2_bagfile_information"]
            files = [path / p for p in info.get("relative_file_paths") or [] if (path / p).is_file()]
        except Exception:  # noqa: BLE001 - a broken metadata.yaml: fall back to the folder's files
            files = []
    if not files:
        files = sorted(p for p in path.iterdir() if p.suffix in (".mcap", ".db3"))
    if not files:
        have = sorted(p.name for p in path.iterdir())
        raise BagError(f"{path} holds no .mcap or .db3 storage file (it has {have})")
    return files


class BagSource:
    """Topics and messages of one rosbag2 bag (folder, or a single .mcap / .db3 file).

    `reader` tells how it was read: "rosbags" (intact bag), "mcap-scan" or "sqlite-recover" (damaged
    or metadata-less bag); `problem` says where a damaged bag stops. Messages come as
    (topic, log time ns, raw CDR bytes), in log-time order for intact bags and in file order otherwise.
    """

    def __init__(self, path: "str | Path"):
        self.path = Path(path)
        self.files = _storage_files(self.path)
        self.storage = "mcap" if self.files[0].suffix == ".mcap" else "sqlite3"
        self.problem: Optional[ReadProblem] = None
        self.open_error: Optional[str] = None
        self.topics: dict[str, TopicInfo] = {}
        self._tmp: Optional[tempfile.TemporaryDirectory] = None
        self.start_ns: Optional[int] = None
        self.end_ns: Optional[int] = None
        self.message_count = 0
        self.reader = "rosbags"
        try:
            self._open_rosbags()
        except Exception as e:  # noqa: BLE001 - rosbags raises several error kinds on damaged bags
            self.open_error = f"{type(e).__name__}: {e}"
            self.reader = "mcap-scan" if self.storage == "mcap" else "sqlite-recover"
            self._open_fallback()

    # ---- intact bags: rosbags ------------------------------------------------------------------
    def _open_rosbags(self) -> None:
        from rosbags.highlevel import AnyReader

        if self.path.is_file() or not (self.path / "metadata.yaml").is_file():
            raise BagError("no metadata.yaml")
        self._any = AnyReader([self.path])
        self._any.open()
        for c in self._any.connections:
            self._add_topic(c.topic, c.msgtype, c.msgcount, getattr(c.msgdef, "data", None),
                            "ros2idl" if "IDL" in str(getattr(c.msgdef, "format", "")) else "ros2msg",
                            c.digest, list(getattr(c.ext, "offered_qos_profiles", []) or []),
                            getattr(c.ext, "serialization_format", "cdr"))
        if self._any.message_count:
            self.start_ns, self.end_ns = self._any.start_time, self._any.end_time - 1
        self.message_count = self._any.message_count

    def _add_topic(self, name, msgtype, count, msgdef, fmt, digest, qos, ser) -> None:
        t = self.topics.get(name)
        if t is None:
            self.topics[name] = TopicInfo(name, msgtype, int(count), msgdef or None, fmt, digest or "", qos, ser)
        elif t.msgtype == msgtype:
            t.count += int(count)
        else:
            warnings.warn(f"topic {name} has two types ({t.msgtype}, {msgtype}); using {t.msgtype}")

    # ---- damaged bags ----------------------------------------------------------------------------
    def _open_fallback(self) -> None:
        counts: dict[str, int] = {}
        first = last = None
        n = 0
        for topic, t, _ in self._raw_fallback(meta=True):
            counts[topic] = counts.get(topic, 0) + 1
            first = t if first is None else min(first, t)
            last = t if last is None else max(last, t)
            n += 1
        for name, c in counts.items():
            self.topics[name].count = c
        self.start_ns, self.end_ns, self.message_count = first, last, n
        if self.problem is None and self.open_error and "metadata.yaml" not in self.open_error:
            self.problem = ReadProblem(f"not readable as an intact bag ({self.open_error})", str(self.files[0]))
        if self.problem is not None:
            self.problem.last_log_time = last

    def _raw_fallback(self, meta: bool) -> Iterator[tuple[str, int, bytes]]:
        for f in self.files:
            if f.suffix == ".mcap":
                yield from self._scan_mcap(f, meta)
            else:
                yield from self._recover_sqlite(f, meta)

    def _scan_mcap(self, f: Path, meta: bool) -> Iterator[tuple[str, int, bytes]]:
        from rosbags.rosbag2.storage_mcap import decompress

        size = f.stat().st_size
        schemas: dict[int, tuple[str, str, str]] = {}
        channels: dict[int, str] = {}

        def fail(reason: str, offset: int) -> None:
            if meta and self.problem is None:
                self.problem = ReadProblem(reason, str(f), offset, size)

        def records(buf: memoryview, base: int, top: bool):
            pos = 0
            while pos < len(buf):
                if len(buf) - pos < 9:
                    fail("the file ends inside a record header", base + pos)
                    return
                op = buf[pos]
                (length,) = struct.unpack_from("<Q", buf, pos + 1)
                if pos + 9 + length > len(buf):
                    fail(f"the file ends inside a record (opcode 0x{op:02x}, {length} bytes)", base + pos)
                    return
                yield op, buf[pos + 9:pos + 9 + length], base + pos
                pos += 9 + length
                if top and op == 0x0F:  # data end: the summary follows
                    return

        def string(b: memoryview, p: int) -> tuple[str, int]:
            (n,) = struct.unpack_from("<I", b, p)
            return bytes(b[p + 4:p + 4 + n]).decode(), p + 4 + n

        def handle(op, rec, offset):
            if op == 0x03:  # schema
                (sid,) = struct.unpack_from("<H", rec, 0)
                name, p = string(rec, 2)
                enc, p = string(rec, p)
                (n,) = struct.unpack_from("<I", rec, p)
                schemas[sid] = (name, enc, bytes(rec[p + 4:p + 4 + n]).decode(errors="replace"))
            elif op == 0x04:  # channel
                cid, sid = struct.unpack_from("<HH", rec, 0)
                topic, p = string(rec, 4)
                enc, p = string(rec, p)
                channels[cid] = topic
                if meta and topic not in self.topics:
                    name, fmt, data = schemas.get(sid, ("", "ros2msg", ""))
                    self.topics[topic] = TopicInfo(topic, name, 0, data or None, fmt or "ros2msg", "", [], enc)
            elif op == 0x05:  # message
                cid, _seq, log_time, _pub = struct.unpack_from("<HIQQ", rec, 0)
                if cid in channels:
                    return channels[cid], log_time, bytes(rec[22:])
            return None

        with open(f, "rb") as fh:
            data = memoryview(fh.read())
        if bytes(data[:8]) != MCAP_MAGIC:
            raise BagError(f"{f} is not an MCAP file (bad magic)")
        for op, rec, off in records(data[8:], 8, top=True):
            if op == 0x06:  # chunk
                start, end, usize, crc = struct.unpack_from("<QQQI", rec, 0)
                comp, p = string(rec, 28)
                (csize,) = struct.unpack_from("<Q", rec, p)
                try:
                    inner = decompress(bytes(rec[p + 8:p + 8 + csize]), comp, usize, crc)
                except Exception as e:  # noqa: BLE001
                    fail(f"chunk at byte {off} is damaged ({e})", off)
                    return
                for iop, irec, _ in records(memoryview(inner), off, top=False):
                    m = handle(iop, irec, off)
                    if m is not None:
                        yield m
            else:
                m = handle(op, rec, off)
                if m is not None:
                    yield m

    def _recover_sqlite(self, f: Path, meta: bool) -> Iterator[tuple[str, int, bytes]]:
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="policy_xai_bag_")
        copy = Path(self._tmp.name) / f.name
        if not copy.exists():
            data = bytearray(f.read_bytes())
            if data[:16] != b"SQLite format 3\x00":
                raise BagError(f"{f} is not an SQLite database")
            (ps,) = struct.unpack(">H", data[16:18])
            ps = 65536 if ps == 1 else ps
            pages = len(data) // ps
            if pages == 0:
                raise BagError(f"{f} is shorter than one database page")
            del data[pages * ps:]
            data[28:32] = struct.pack(">I", pages)  # the page count the file really holds
            copy.write_bytes(bytes(data))
        con = sqlite3.connect(f"file:{copy}?mode=ro", uri=True)
        try:
            cols = {r[1] for r in con.execute("PRAGMA table_info(topics)")}
            sel = ["id", "name", "type", "serialization_format"]
            sel += [c for c in ("offered_qos_profiles",) if c in cols]
            topics = {}
            for row in con.execute(f"SELECT {', '.join(sel)} FROM topics"):
                topics[row[0]] = row[1]
                if meta and row[1] not in self.topics:
                    self.topics[row[1]] = TopicInfo(row[1], row[2], 0, None, "ros2msg", "", [], row[3])
            if meta:
                try:
                    for typ, enc, text in con.execute(
                            "SELECT topic_type, encoding, encoded_message_definition FROM message_definitions"):
                        for t in self.topics.values():
                            if t.msgtype == typ and t.msgdef is None:
                                t.msgdef, t.msgdef_format = text, enc or "ros2msg"
                except sqlite3.DatabaseError:
                    pass  # older bags have no definitions table
            last = None
            try:
                for rid, tid, ts, blob in con.execute("SELECT id, topic_id, timestamp, data FROM messages ORDER BY id"):
                    last = rid
                    if tid in topics:
                        yield topics[tid], int(ts), bytes(blob)
            except sqlite3.DatabaseError as e:
                if meta and self.problem is None:
                    self.problem = ReadProblem(f"SQLite reports '{e}' (the file is cut off or damaged)", str(f),
                                               last_row=last)
        except sqlite3.DatabaseError as e:
            raise BagError(f"{f}: cannot read the topics of the bag ({e})") from e
        finally:
            con.close()

    # ---- messages ------------------------------------------------------------------------------
    def messages(self, topics: Optional[Sequence[str]] = None,
                 start: Optional[int] = None) -> Iterator[tuple[str, int, bytes]]:
        """(topic, log time ns, raw CDR bytes) of `topics` (None: all), from log time `start` on."""
        wanted = None if topics is None else set(topics)
        if self.reader == "rosbags":
            conns = [c for c in self._any.connections if wanted is None or c.topic in wanted]
            try:
                for c, t, raw in self._any.messages(connections=conns, start=start):
                    yield c.topic, t, raw
            except Exception as e:  # noqa: BLE001 - damage inside an indexed file
                if self.problem is None:
                    self.problem = ReadProblem(f"{type(e).__name__}: {e}", str(self.files[0]))
            return
        for topic, t, raw in self._raw_fallback(meta=False):
            if (wanted is None or topic in wanted) and (start is None or t >= start):
                yield topic, t, raw

    def describe_topics(self) -> str:
        topics = sorted(self.topics.values(), key=lambda t: t.name)
        return ", ".join(f"{t.name} ({t.msgtype}, {t.count})" for t in topics)

    def close(self) -> None:
        if self.reader == "rosbags":
            self._any.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> "BagSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def register_bag_types(ts, topics: Sequence[TopicInfo]) -> list[str]:
    """Add the bag's own message definitions for types the typestore lacks; returns types still unknown."""
    from rosbags.typesys import get_types_from_idl, get_types_from_msg

    unknown = []
    for t in topics:
        if t.msgtype in ts.types:
            continue
        if not t.msgdef:
            unknown.append(t.msgtype)
            continue
        try:
            if t.msgdef_format == "ros2idl":
                ts.register(get_types_from_idl(t.msgdef))
            else:
                # rosbag2 concatenates the dependencies: "=====...\nMSG: pkg/msg/Name\n<definition>"
                parts = t.msgdef.split("\n" + "=" * 80 + "\n")
                types = get_types_from_msg(parts[0], t.msgtype)
                for part in parts[1:]:
                    head, _, body = part.partition("\n")
                    name = head.removeprefix("MSG: ").strip()
                    if "/msg/" not in name and "/" in name:
                        name = name.replace("/", "/msg/", 1)
                    types.update(get_types_from_msg(body, name))
                ts.register(types)
        except Exception:  # noqa: BLE001 - an unparsable definition: the type stays unknown
            unknown.append(t.msgtype)
    return sorted(set(unknown))
