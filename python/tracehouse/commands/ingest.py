"""`tracehouse ingest ...` and `tracehouse serve`: real telemetry into the lake."""

# Libraries are imported inside command bodies so that `tracehouse --help` stays fast, and
# typer commands take their options as parameters.
# ruff: noqa: PLR0917

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

LakeOption = Annotated[
    Path,
    typer.Option(
        "--lake",
        envvar="TRACEHOUSE_LAKE",
        help="Lake folder (spans/, feedback/, annotations/, _quarantine/). Env: TRACEHOUSE_LAKE.",
    ),
]
EphemeralKeyOption = Annotated[
    bool,
    typer.Option(
        "--allow-ephemeral-key",
        help="Without TRACEHOUSE_HASH_KEY, hash user ids with a random per-process key (dev "
        "only: hashes then join with nothing else). Default: refuse to start.",
    ),
]
ArtifactDirOption = Annotated[
    Path | None,
    typer.Option(
        "--artifact-dir",
        help="Store tier-3 content (full prompts, outputs, documents) here, outside the lake, "
        "and reference it in artifact_refs. Default: such content is withheld.",
    ),
]
DefaultEnvironmentOption = Annotated[
    str,
    typer.Option(help="environment of spans whose resource has no deployment.environment.name "
                 "(prod, staging, dev)."),
]
DefaultTenantOption = Annotated[
    str, typer.Option(help="tenant_id of spans with no tracehouse.tenant_id anywhere.")
]

NerOption = Annotated[
    str,
    typer.Option(
        "--ner",
        help="Optional NER pass over free text for names of people and places: 'presidio' "
        "(needs `pip install 'tracehouse[ner]'` and an installed spaCy model) or 'none'.",
    ),
]
NerModelOption = Annotated[
    str,
    typer.Option(
        "--ner-model",
        help="spaCy model package name or model folder for --ner presidio (never downloaded).",
    ),
]


def _with_ner(redactor, ner: str, ner_model: str):
    from tracehouse.ner import load_ner

    redactor.ner = load_ner(ner, ner_model)  # not installed: NerUnavailableError, exit 2
    return redactor


def _redactor(allow_ephemeral_key: bool):
    from tracehouse.redaction import Redactor

    return Redactor.from_env(allow_ephemeral=allow_ephemeral_key)  # no key: exit 2


def _check_artifact_key(artifact_dir: Path | None) -> None:
    """With --artifact-dir, TRACEHOUSE_MASTER_KEY must be set: say so before landing anything."""
    if artifact_dir is None:
        return
    from tracehouse.artifacts.keys import MasterKey

    MasterKey.from_env()  # not set: ArtifactKeyError, exit 2


def _defaults(environment: str, tenant: str):
    from tracehouse.contract.schemas import ENVIRONMENTS
    from tracehouse.otlp.mapping import MappingDefaults

    if environment not in ENVIRONMENTS:
        raise typer.BadParameter(f"must be one of {ENVIRONMENTS}",
                                 param_hint="--default-environment")
    return MappingDefaults(environment=environment, tenant_id=tenant)


def _print_report(report, extra: str = "") -> None:
    line = (f"{report.dataset} batch {report.batch_id}: received {report.received}, "
            f"accepted {report.accepted}, quarantined {report.quarantined}{extra}")
    typer.echo(line)
    for reason, n in sorted(report.reject_reasons.items()):
        typer.echo(f"  quarantined {n}: {reason}")


def register(app: typer.Typer) -> None:
    """Add the `ingest` command group and the `serve` command to ``app``."""
    ingest_app = typer.Typer(help="Land files in the lake: OTLP exports or contract Parquet.")
    app.add_typer(ingest_app, name="ingest")
    from tracehouse.commands.history import register_history  # langfuse, phoenix

    register_history(ingest_app)

    @ingest_app.command("otlp")
    def ingest_otlp(
        lake: LakeOption,
        files: Annotated[
            list[Path],
            typer.Argument(help="OTLP trace files: JSON lines (one ExportTraceServiceRequest per "
                           "line, as the collector's file exporter writes), or protobuf; "
                           ".gz allowed.", exists=True, dir_okay=False),
        ],
        allow_ephemeral_key: EphemeralKeyOption = False,
        artifact_dir: ArtifactDirOption = None,
        default_environment: DefaultEnvironmentOption = "dev",
        default_tenant: DefaultTenantOption = "unknown",
        ner: NerOption = "none",
        ner_model: NerModelOption = "en_core_web_lg",
    ) -> None:
        """Map OTLP spans (GenAI or OpenInference conventions) to contract rows, redact, land."""
        from tracehouse.otlp.ingest import ingest_otlp_files
        from tracehouse.redaction import ArtifactStore

        redactor = _with_ner(_redactor(allow_ephemeral_key), ner, ner_model)
        _check_artifact_key(artifact_dir)
        artifacts = ArtifactStore(artifact_dir, lake=lake) if artifact_dir else None
        reports = ingest_otlp_files(
            lake, files, redactor, defaults=_defaults(default_environment, default_tenant),
            artifacts=artifacts,
        )
        for report in reports:
            _print_report(report)

    @ingest_app.command("parquet")
    def ingest_parquet(
        lake: LakeOption,
        dataset: Annotated[str, typer.Option(help="spans, feedback or annotations.")],
        files: Annotated[
            list[Path],
            typer.Argument(help="Parquet files of contract rows.", exists=True, dir_okay=False),
        ],
        allow_ephemeral_key: EphemeralKeyOption = False,
        ner: NerOption = "none",
        ner_model: NerModelOption = "en_core_web_lg",
    ) -> None:
        """Land a producer's own contract Parquet files (redaction checked, columns validated)."""
        from tracehouse.contract import DATASETS
        from tracehouse.otlp.ingest import ingest_parquet_files

        if dataset not in DATASETS:
            raise typer.BadParameter(f"must be one of {sorted(DATASETS)}", param_hint="--dataset")
        redactor = _with_ner(_redactor(allow_ephemeral_key), ner, ner_model)
        for report, dropped in ingest_parquet_files(lake, dataset, files, redactor):
            _print_report(report, f"; left out non-contract columns {dropped}" if dropped else "")

    @app.command("serve")
    def serve_cmd(
        lake: LakeOption,
        host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
        port: Annotated[int, typer.Option(help="OTLP/HTTP port (4318 is OTLP's; 0 picks a free "
                                          "one).")] = 4318,
        grpc_port: Annotated[int, typer.Option(help="OTLP/gRPC port (4317 is OTLP's; 0 picks a "
                                               "free one; -1 turns gRPC off).")] = 4317,
        batch_rows: Annotated[int, typer.Option(help="Write a batch at this many rows.")] = 5000,
        flush_seconds: Annotated[float, typer.Option(help="... or when the oldest buffered "
                                                     "rows are this old.")] = 2.0,
        max_buffer_rows: Annotated[int, typer.Option(help="Answer 503 + Retry-After above this "
                                                     "many buffered rows.")] = 100_000,
        max_body_mb: Annotated[float, typer.Option(help="Largest request body on the wire "
                                                   "(413 above).")] = 16.0,
        max_inflated_mb: Annotated[float, typer.Option(help="Largest body after gzip/deflate "
                                                       "(413 above).")] = 64.0,
        max_name_chars: Annotated[int, typer.Option(min=16, help="Span and event names are cut "
                                                    "to this many characters (tag: truncated).")]
        = 1024,
        max_attribute_chars: Annotated[int, typer.Option(
            min=256, help="String attribute values are cut to this many characters (tag: "
            "truncated); keys longer than 256 are dropped.")] = 65_536,
        spool: Annotated[bool, typer.Option(help="Spool accepted rows to <lake>/_spool before "
                                            "answering 2xx, so a crash loses nothing.")] = True,
        tls_cert: Annotated[Path | None, typer.Option(
            help="PEM certificate (chain): serve HTTPS and gRPC over TLS.", exists=True,
            dir_okay=False)] = None,
        tls_key: Annotated[Path | None, typer.Option(
            help="PEM private key of --tls-cert.", exists=True, dir_okay=False)] = None,
        workers: Annotated[int, typer.Option(
            min=0, help="Decode/map worker processes; 0 decodes in 2 threads of the server process "
            "(less memory, but a slow body can delay other requests).")] = 2,
        max_pending: Annotated[int, typer.Option(min=1, help="Requests decoding or waiting for a "
                                                 "worker; 503 + Retry-After above.")] = 16,
        header_timeout: Annotated[float, typer.Option(
            min=0.1, help="Seconds a connection may take to send a request head.")] = 10.0,
        body_timeout: Annotated[float, typer.Option(
            min=0.1, help="Seconds a request may take to send its body (408 after).")] = 30.0,
        max_connections: Annotated[int, typer.Option(
            min=1, help="Open HTTP connections (503 above).")] = 256,
        allow_ephemeral_key: EphemeralKeyOption = False,
        artifact_dir: ArtifactDirOption = None,
        default_environment: DefaultEnvironmentOption = "dev",
        default_tenant: DefaultTenantOption = "unknown",
    ) -> None:
        """OTLP receiver: POST /v1/traces (protobuf or JSON), /v1/feedback, /v1/annotations, and
        OTLP/gRPC TraceService/Export.

        Point an OpenTelemetry SDK at it with
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://127.0.0.1:4318/v1/traces (HTTP) or
        OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317 with OTEL_EXPORTER_OTLP_PROTOCOL=grpc.
        With TRACEHOUSE_INGEST_TOKEN set, every request needs "Authorization: Bearer <token>".
        SIGTERM flushes everything accepted and exits 0 (1 if acknowledged rows could not be
        landed: they stay in the spool).
        """
        import os

        from tracehouse.otlp.decode import DecodeLimits
        from tracehouse.server import TOKEN_ENV, ServerConfig, serve

        if (tls_cert is None) != (tls_key is None):
            raise typer.BadParameter("give both --tls-cert and --tls-key", param_hint="--tls-key")
        redactor = _redactor(allow_ephemeral_key)
        _check_artifact_key(artifact_dir)
        lake.mkdir(parents=True, exist_ok=True)
        token = os.environ.get(TOKEN_ENV) or None
        config = ServerConfig(
            lake=lake, host=host, port=port, grpc_port=None if grpc_port < 0 else grpc_port,
            batch_rows=batch_rows, flush_seconds=flush_seconds,
            max_buffer_rows=max_buffer_rows, max_body_bytes=int(max_body_mb * 1024 * 1024),
            max_decompressed_bytes=int(max_inflated_mb * 1024 * 1024),
            limits=DecodeLimits(max_name_chars=max_name_chars,
                                max_value_chars=max_attribute_chars),
            spool=spool, artifact_dir=artifact_dir,
            defaults=_defaults(default_environment, default_tenant),
            auth_token=token, tls_cert=tls_cert, tls_key=tls_key, workers=workers or 2,
            worker_kind="process" if workers > 0 else "thread",
            max_pending=max_pending, header_timeout_seconds=header_timeout,
            body_timeout_seconds=body_timeout, max_connections=max_connections,
        )

        def ready(receiver) -> None:
            scheme = "https" if receiver.tls else "http"
            grpc_note = (f", OTLP/gRPC on {host}:{receiver.grpc_port}"
                         if receiver.grpc_port is not None else "")
            auth = ", bearer token required" if token else ""
            print(f"tracehouse serve: listening on {scheme}://{host}:{receiver.port} "
                  f"(lake {lake}){grpc_note}{auth}", flush=True)

        code = serve(config, redactor, ready=ready)
        print("tracehouse serve: stopped, " + ("everything accepted is in the lake" if code == 0
              else "acknowledged rows are NOT in the lake (kept in the spool; see the log)"),
              flush=True)
        sys.stdout.flush()
        raise typer.Exit(code)
