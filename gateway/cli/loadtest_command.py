"""``dcp-gateway loadtest``: named end-to-end scenarios with a report (``gateway.loadtest``)."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.cli import CliError

if TYPE_CHECKING:
    from gateway.loadtest.scenarios import Scenario


def register(sub: argparse._SubParsersAction[Any]) -> None:
    try:
        from gateway.loadtest.scenarios import CUSTOM, SCENARIOS
        from gateway.schema.samples import SAMPLE_INTERFACES

        interfaces = ", ".join(SAMPLE_INTERFACES)
    except ModuleNotFoundError:  # the production image leaves the tool out: _loadtest says so
        SCENARIOS, CUSTOM, interfaces = {}, "custom", ""

    parser = sub.add_parser(
        "loadtest",
        help="measure the gateway end to end: Kafka -> gateway -> DIP simulator, and back",
        description="Runs a named scenario against a gateway in its own process, an embedded "
        "broker and the DIP simulator (or --bootstrap-servers and --simulator-url), and writes "
        "result.json, summary.md and PNG charts to --output. Scenarios: "
        + "; ".join(f"{name}: {s.description}" for name, s in SCENARIOS.items())
        + f"; {CUSTOM}: one egress phase described by --messages, --rate, --batch, --clients, "
        "--interfaces and --dip-latency-ms.",
    )
    parser.add_argument(
        "--scenario",
        choices=[*sorted(SCENARIOS), CUSTOM],
        default="smoke",
        help="what to run (default: smoke, under a minute); the description lists each",
    )
    custom = parser.add_argument_group(
        f"--scenario {CUSTOM}", "one egress phase of your own (each option only with it)"
    )
    custom.add_argument(
        "--rate",
        type=float,
        help="msgs/s offered open loop (default: flat out; batched, from a backlog)",
    )
    custom.add_argument("--batch", type=_positive, help="egress.max_batch_messages (default 500)")
    custom.add_argument("--clients", type=_positive, help="sending clients (default 1)")
    custom.add_argument(
        "--interfaces",
        help=f"comma-separated, from {interfaces} (default: all)",
    )
    custom.add_argument(
        "--dip-latency-ms", type=float, help="added to every DIP answer by the simulator"
    )
    parser.add_argument("--output", type=Path, required=True, help="folder for the report")
    parser.add_argument(
        "--messages", type=_positive, help="messages per egress phase (default: the scenario's)"
    )
    parser.add_argument(
        "--workdir", type=Path, default=Path("var/loadtest"), help="dev PKIs kept between runs"
    )
    parser.add_argument("--bits", type=int, default=4096, help="RSA key size of the dev PKI")
    parser.add_argument("--bootstrap-servers", help="an existing Kafka instead of the embedded one")
    parser.add_argument(
        "--kafka-config",
        type=Path,
        help="with --bootstrap-servers: a YAML file of that Kafka's connection settings, as in "
        "the gateway's `kafka` section (" + ", ".join(sorted(KAFKA_CONNECTION_KEYS)) + "); "
        "relative paths are read from the file's folder",
    )
    parser.add_argument(
        "--tansu",
        action="store_true",
        help="with --bootstrap-servers: that broker is Tansu (no idempotent producers)",
    )
    parser.add_argument("--simulator-url", help="an existing DIP simulator (needs --pki)")
    parser.add_argument(
        "--pki", type=Path, help="the dev PKI folder the simulator was started with"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(handler=_loadtest)


def _loadtest(args: argparse.Namespace) -> int:
    try:
        from gateway.loadtest import Options, report, run_scenario
    except ImportError as exc:
        if exc.name and exc.name.startswith("gateway."):  # the production image leaves it out
            raise CliError(
                f"the load-test tool is not part of this installation ({exc.name} is missing): "
                "run it from a source checkout"
            ) from None
        raise CliError(f"{exc.name} is missing: pip install 'dcp-gateway[loadtest]'") from None
    from gateway.ops import eventloop
    from gateway.ops.logging import configure_logging

    if args.simulator_url and args.pki is None:
        raise CliError("--simulator-url needs --pki (the dev PKI folder the simulator uses)")
    kafka: dict[str, Any] = {}
    if args.kafka_config is not None:
        if args.bootstrap_servers is None:
            raise CliError("--kafka-config needs --bootstrap-servers (the Kafka it describes)")
        kafka = kafka_connection(args.kafka_config)
    configure_logging("warning", "console")
    options = Options(
        output=args.output,
        workdir=args.workdir,
        bits=args.bits,
        bootstrap_servers=args.bootstrap_servers,
        simulator_url=args.simulator_url,
        pki=args.pki,
        tansu=args.tansu,
        kafka=kafka,
        command=shlex.join(["dcp-gateway", *sys.argv[1:]]),
        progress=not args.no_progress,
    )
    scenario = _scenario(args)
    doc = eventloop.run(run_scenario(scenario, options))
    result = report.write(doc, args.output)
    print(
        f"{result['produced']:,} produced, {result['delivered']:,} delivered, "
        f"{result['dead_lettered']:,} dead-lettered, {result['missing']:,} missing; "
        f"{result['messages_per_second']:,.0f} msgs/s ({result['headline_phase']}); "
        f"report in {args.output / 'summary.md'}"
    )
    failed = result.get("failed")
    if failed:
        print(f"{failed['phase']} failed: {failed['error']} (the phases before it are reported)")
    return 0 if result["missing"] == 0 and not failed else 1


#: The ``kafka`` settings ``--kafka-config`` may give: how to connect, nothing the phases own.
KAFKA_CONNECTION_KEYS = frozenset(
    {
        "client_id",
        "security_protocol",
        "ssl_ca_file",
        "ssl_cert_file",
        "ssl_key_file",
        "sasl_mechanism",
        "sasl_username",
        "sasl_password_file",
    }
)
_PATH_KEYS = frozenset({"ssl_ca_file", "ssl_cert_file", "ssl_key_file", "sasl_password_file"})


def kafka_connection(path: Path) -> dict[str, Any]:
    """The connection settings in ``path``, file paths made absolute (each phase's config is
    written elsewhere); a mistake names the key and the fix."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise CliError(f"--kafka-config {path}: cannot read it: {exc}") from None
    if not isinstance(data, dict):
        raise CliError(
            f"--kafka-config {path}: expected a mapping such as 'security_protocol: SSL', "
            f"got {type(data).__name__}"
        )
    unknown = sorted(str(k) for k in data if k not in KAFKA_CONNECTION_KEYS)
    if unknown:
        where = ""
        if "bootstrap_servers" in data:
            where = "; give bootstrap_servers as --bootstrap-servers"
        raise CliError(
            f"--kafka-config {path}: {', '.join(unknown)} cannot be set here: give only "
            f"{', '.join(sorted(KAFKA_CONNECTION_KEYS))} (the load test owns topics and "
            f"groups){where}"
        )
    return {
        key: str((path.parent / str(value)).resolve())
        if key in _PATH_KEYS and value is not None
        else value
        for key, value in data.items()
    }


_CUSTOM_OPTIONS = ("rate", "batch", "clients", "interfaces", "dip_latency_ms")


def _scenario(args: argparse.Namespace) -> Scenario:
    from gateway.loadtest.scenarios import CUSTOM, SCENARIOS, custom, scaled
    from gateway.schema.samples import SAMPLE_INTERFACES

    given = [name for name in _CUSTOM_OPTIONS if getattr(args, name) is not None]
    if args.scenario != CUSTOM:
        if given:
            flags = ", ".join("--" + name.replace("_", "-") for name in given)
            raise CliError(
                f"{flags}: only with --scenario {CUSTOM}; the named scenarios set their own "
                "rates, batch sizes and clients (--messages scales any of them)"
            )
        return scaled(SCENARIOS[args.scenario], args.messages)
    shape: dict[str, Any] = {
        "batch": args.batch,
        "clients": args.clients,
        "rate": args.rate,
        "dip_latency_ms": args.dip_latency_ms,
    }
    if args.interfaces is not None:
        interfaces = tuple(i.strip() for i in args.interfaces.split(",") if i.strip())
        unknown = [i for i in interfaces if i not in SAMPLE_INTERFACES]
        if unknown or not interfaces:
            raise CliError(
                f"--interfaces {args.interfaces!r}: the load test generates "
                f"{', '.join(SAMPLE_INTERFACES)}; give some of those, comma-separated"
            )
        shape["interfaces"] = interfaces
    try:  # what is not given keeps custom()'s default
        return custom(args.messages or 10_000, **{k: v for k, v in shape.items() if v is not None})
    except ValueError as exc:
        raise CliError(f"--scenario {CUSTOM}: {exc}") from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value
