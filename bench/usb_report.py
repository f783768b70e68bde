"""The USB bench's one table: each figure for us and for uMTP-Responder, the ratio, the goal.

Figures are medians over the rounds of transfers that passed their check; a row
whose figures are missing says so instead of a number.  A goal missed is shown
as such and never turns into a failure: the bench fails only when it could not
measure.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

GIB = 1 << 30
MIB = 1 << 20


@dataclass
class Row:
    what: str
    ours: float | None
    peer: float | None
    unit: str
    goal: str = ""
    met: bool | None = None
    ratio: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def median(values: Iterable[float | None]) -> float | None:
    good = [v for v in values if v is not None]
    return statistics.median(good) if good else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _pick(records: list[dict[str, Any]], **match: Any) -> list[dict[str, Any]]:
    return [r for r in records if r.get("ok") and all(r.get(k) == v for k, v in match.items())]


def transfer_rows(data: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    transfers = data.get("transfers", [])
    tags = sorted({t["tag"] for t in transfers}, key=lambda tag: int(tag.rstrip("MiB")))
    names = {"get": "GetObject", "send": "SendObject"}
    for tag in tags:
        for direction in ("get", "send"):
            for client in ("libmtp", "raw"):
                common = {"tag": tag, "direction": direction, "client": client}
                for kind in ("wall", "data"):

                    def rate(
                        resp: str, kind: str = kind, common: dict[str, Any] = common
                    ) -> float | None:
                        return median(
                            t["size"] / t[kind] / 1e6 if t.get(kind) else None
                            for t in _pick(transfers, responder=resp, **common)
                        )

                    ours, peer = rate("ours"), rate("umtprd")
                    ratio = _ratio(ours, peer)
                    rows.append(Row(f"{names[direction]} {tag} {client} {kind}", ours, peer,
                                    "MB/s", ">= 1.0x peer",
                                    None if ratio is None else ratio >= 1.0, ratio))  # fmt: skip

                def cpu(resp: str, common: dict[str, Any] = common) -> float | None:
                    return median(
                        t["responder_cpu"] * GIB / t["size"]
                        if t.get("responder_cpu") is not None else None
                        for t in _pick(transfers, responder=resp, **common)
                    )  # fmt: skip

                ours, peer = cpu("ours"), cpu("umtprd")
                ratio = _ratio(ours, peer)
                rows.append(
                    Row(
                        f"{names[direction]} {tag} {client} CPU",
                        ours,
                        peer,
                        "s/GiB",
                        "<= 1.2x peer",
                        None if ratio is None else ratio <= 1.2,
                        ratio,
                    )
                )

    def rss(resp: str) -> float | None:
        values = [t["peak_rss_kib"] / 1024 for t in transfers
                  if t["responder"] == resp and t.get("peak_rss_kib")]  # fmt: skip
        return max(values) if values else None

    idle = data.get("idle", [])
    if idle:
        ours_idle = median(i["cpu_per_s"] for i in idle if i["responder"] == "ours")
        peer_idle = median(i["cpu_per_s"] for i in idle if i["responder"] == "umtprd")
        rows.append(Row("responder CPU while serving idle", ours_idle, peer_idle, "s/s", "", None,
                        _ratio(ours_idle, peer_idle)))  # fmt: skip
    ours = rss("ours")
    rows.append(Row("peak RSS (VmHWM) over the transfers", ours, rss("umtprd"), "MiB",
                    "ours <= 24 MiB", None if ours is None else ours <= 24,
                    _ratio(ours, rss("umtprd"))))  # fmt: skip
    return rows


def other_rows(data: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    startup = data.get("startup", [])
    for kind in ("cold", "warm"):

        def start(resp: str, kind: str = kind) -> float | None:
            return median(r.get("seconds") for r in startup
                          if r["responder"] == resp and r["kind"] == kind)  # fmt: skip

        ours = start("ours")
        goal, met = (
            ("", None)
            if kind == "cold"
            else ("ours <= 0.5 s", None if ours is None else ours <= 0.5)
        )
        rows.append(Row(f"start-up exec -> descriptors, {kind}", ours, start("umtprd"), "s",
                        goal, met, _ratio(ours, start("umtprd"))))  # fmt: skip
    listing = data.get("listing", [])
    if listing:
        files = listing[0]["files"]
        wall = {
            r: median(x.get("wall") for x in _pick(listing, responder=r))
            for r in ("ours", "umtprd")
        }
        cpu = {r: median(x.get("responder_cpu") for x in _pick(listing, responder=r))
               for r in ("ours", "umtprd")}  # fmt: skip
        ratio = _ratio(wall["ours"], wall["umtprd"])
        rows.append(Row(f"mtp-files, folder of {files} files, wall", wall["ours"], wall["umtprd"],
                        "s", "<= 0.5x peer (2x faster)", None if ratio is None else ratio <= 0.5,
                        ratio))  # fmt: skip
        rows.append(
            Row(
                f"mtp-files, folder of {files} files, responder CPU",
                cpu["ours"],
                cpu["umtprd"],
                "s",
                "",
                None,
                _ratio(cpu["ours"], cpu["umtprd"]),
            )
        )
    small = data.get("small", [])
    for direction, name in (("send", "sent"), ("get", "fetched")):

        def rate(resp: str, direction: str = direction) -> float | None:
            return median(
                x["files"] / x["seconds"] for x in _pick(small, responder=resp, direction=direction)
            )

        if small:
            count = small[0]["files"]
            ours, peer = rate("ours"), rate("umtprd")
            rows.append(Row(f"{count} x 4 KiB {name} (pyusb, one session)", ours, peer,
                            "files/s", "", None, _ratio(ours, peer)))  # fmt: skip
    backup = data.get("backup", [])
    if backup:
        size = backup[0]["size"]

        def mbps(kind: str, field: str) -> float | None:
            return median(x["size"] / x[field] / 1e6 for x in _pick(backup, kind=kind))

        for field in ("wall", "data"):
            archive, plain = mbps("mbak", field), mbps("plain", field)
            ratio = _ratio(archive, plain)
            rows.append(
                Row(
                    f"backup GetObject {size / MIB:.0f} MiB {field} (ours: .mbak | plain)",
                    archive,
                    plain,
                    "MB/s",
                    ">= 0.9x plain",
                    None if ratio is None else ratio >= 0.9,
                    ratio,
                )
            )
    return rows


def _num(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"


def print_table(rows: list[Row], out: Callable[[str], None] = print) -> None:
    out(f"{'figure':<58} {'ours':>9} {'umtprd':>9} {'unit':<7} {'ratio':>7}  goal")
    out("-" * 110)
    out("(backup rows: both columns are ours, the archive next to a plain file of its size)")
    for row in rows:
        verdict = {True: "met", False: "MISSED", None: ""}[row.met]
        out(f"{row.what:<58} {_num(row.ours):>9} {_num(row.peer):>9} {row.unit:<7} "
            f"{_num(row.ratio) + 'x' if row.ratio is not None else 'n/a':>7}  "
            f"{row.goal}{' ' + verdict if verdict else ''}")  # fmt: skip
