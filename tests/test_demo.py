"""The demo behind `make run`: every part really runs and messages really flow both ways."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from pathlib import Path

import httpx
import orjson
import pytest

from gateway.config import load_config
from gateway.demo import DemoCounts, _simulator, bad_share, demo_messages, run_demo
from gateway.kafka.embedded import free_port
from gateway.ops.metrics import KNOWN_INTERFACES, OTHER_INTERFACE
from gateway.schema import default_registry
from tests.dipsim_fixtures import DevPki, dcp_http_client
from tests.kafka_fixtures import KafkaUnderTest
from tests.promtool_fixtures import run_promtool


@pytest.mark.tansu
async def test_demo_moves_messages_to_the_dip_and_back(
    tmp_path: Path, kafka: KafkaUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in kafka.env().items():  # the operator's overrides win over the demo's
        monkeypatch.setenv(name, value)
    counts = DemoCounts()
    demo = asyncio.create_task(
        run_demo(
            tmp_path,
            clients=2,
            bits=2048,
            rate=40,
            duration=12,
            kafka_bootstrap=kafka.bootstrap_servers,
            report_every=4,
            handle_signals=False,
            counts=counts,
        )
    )
    scrape = ""
    while not demo.done():
        await asyncio.sleep(0.2)
        if counts.metrics_url and counts.accepted and counts.dead_lettered:
            async with httpx.AsyncClient(timeout=10) as http:
                scrape = (await http.get(counts.metrics_url)).text
            if {"environment", "schema"} <= _dead_letter_reasons(scrape):
                break  # the demo sends each kind of bad message: wait until both have come
    assert await demo is counts
    assert scrape, "the demo ended before its /metrics showed accepted and dead-lettered messages"
    _check_scrape(scrape)
    assert counts.produced >= 100
    # Accepted by the simulator (result records) and pushed back to the webhook (inbound).
    assert counts.accepted > 0
    assert counts.inbound > 0
    # The deliberately bad ones are dead-lettered, each kind with its own reason.
    assert counts.dead_lettered > 0
    reasons = " ".join(counts.reasons)
    assert "environmentTag" in reasons
    assert "MSG1001 - Schema Failure" in reasons
    assert (tmp_path / "dev-pki" / "gateway.yaml").is_file()


async def test_simulator_starts_without_blocking_the_loop_and_leaves_no_pipe_open(
    dev_pki: Path, pki: DevPki
) -> None:
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    fds_before = set(os.listdir("/proc/self/fd"))
    ticker = asyncio.create_task(tick())
    try:
        async with _simulator(dev_pki, free_port()) as url:
            ticks_while_starting = ticks
            async with dcp_http_client(pki, url) as http:
                assert (await http.get("/_sim/stats")).status_code == 200
    finally:
        ticker.cancel()
    # Starting a Python process takes well over 0.1 s; a blocking read would have frozen the
    # ticker for all of it.
    assert ticks_while_starting >= 5
    leaked = set(os.listdir("/proc/self/fd")) - fds_before
    assert not leaked, [os.readlink(f"/proc/self/fd/{fd}") for fd in leaked if _exists(fd)]


def _exists(fd: str) -> bool:
    return os.path.exists(f"/proc/self/fd/{fd}")


def test_the_banner_says_how_many_messages_are_bad(dev_pki: Path) -> None:
    """Bad is judged as the gateway judges it: another environment's tag, or a schema error."""
    config = load_config(dev_pki / "gateway.yaml")
    registry = default_registry()
    messages = [m for _, (_, m) in zip(range(100), demo_messages(config), strict=False)]
    bad = 0
    for value in messages:
        payload = orjson.loads(value)
        wrong_environment = (
            payload["CommonBlock"]["S1"]["environmentTag"] != config.environment.value
        )
        bad += wrong_environment or bool(registry.validate(payload))
    stated = re.match(r"(\d+) in 10 deliberately bad", bad_share())
    assert stated is not None
    assert bad == int(stated.group(1)) * 10


async def test_simulator_runs_in_its_own_session(dev_pki: Path) -> None:
    """A terminal's Ctrl-C goes to its foreground process group: the simulator must not get it,
    or the gateway drains against a DIP that is already gone."""
    async with _simulator(dev_pki, free_port()):
        children = [pid for pid in _children() if b"dipsim" in _cmdline(pid)]
        assert len(children) == 1
        assert os.getsid(children[0]) != os.getsid(0)


@pytest.mark.tansu
async def test_ctrl_c_stops_the_gateway_before_the_simulator(
    tmp_path: Path, kafka: KafkaUnderTest
) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        "demo",
        "--workdir",
        str(tmp_path),
        "--clients",
        "2",
        "--bits",
        "2048",
        "--rate",
        "40",
        "--kafka",
        kafka.bootstrap_servers,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        # the broker's settings as operator overrides, which win over the demo's
        env={**os.environ, **kafka.env(), "PYTHONUNBUFFERED": "1"},
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    assert proc.stdout is not None
    before: list[str] = []
    try:
        async with asyncio.timeout(180):
            while not re.search(r"accepted by DIP +[1-9]", before[-1] if before else ""):
                line = (await proc.stdout.readline()).decode()
                assert line, "".join(before)
                before.append(line)
        # A slow DIP, so requests are in flight when Ctrl-C comes and the drain waits for them.
        (sim_url,) = re.findall(r"DIP simulator on (\S+)", "".join(before))
        root = tmp_path / "dev-pki"
        pki = DevPki(root, json.loads((root / "dev-pki.json").read_text()))
        async with dcp_http_client(pki, sim_url) as http:
            answer = await http.post("/_sim/faults", json={"latency_ms": 1500})
            assert answer.status_code == 200
        await asyncio.sleep(1.0)
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        async with asyncio.timeout(120):
            after = (await proc.stdout.read()).decode()
            code = await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert "2 in 10 deliberately bad" in "".join(before)
    assert code == 0, after
    first = after.index("stopping the gateway first")
    assert after.index("gateway stopped; stopping the DIP simulator", first) > first
    # The simulator answered throughout the drain: nothing was retried for want of an answer.
    assert "no answer from the DIP" not in after


def _children() -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid():
                out.append(int(entry))
    return out


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _dead_letter_reasons(scrape: str) -> set[str]:
    dead = [line for line in scrape.splitlines() if line.startswith("dcpgw_egress_messages_dead")]
    return set(re.findall(r'reason="([a-z_]+)"', " ".join(dead)))


def _check_scrape(scrape: str) -> None:
    """A scrape of the running demo passes promtool's lint and carries the operator's metrics."""
    assert run_promtool("check", "metrics", stdin=scrape).strip() == ""
    names = {line.split("{")[0].split(" ")[0] for line in scrape.splitlines() if line[:1] != "#"}
    assert not [n for n in names if n.endswith("_created")]
    assert "dcpgw_build_info" in names
    assert "dcpgw_egress_end_to_end_seconds_bucket" in names
    reasons = _dead_letter_reasons(scrape)
    assert "environment" in reasons  # the demo's wrong environmentTag
    assert "schema" in reasons  # the demo clients validate: bad references never leave
    interfaces = set(re.findall(r'interface="([^"]+)"', scrape))
    assert interfaces and interfaces <= KNOWN_INTERFACES | {OTHER_INTERFACE, "(none)"}
    expiry = r"dcpgw_certificate_expiry_timestamp_seconds\{[^}]*kind=\"(\w+)\""
    kinds = set(re.findall(expiry, scrape))
    assert kinds == {"signing", "mtls", "dip_trust_anchor"}
