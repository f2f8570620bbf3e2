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
    from tracehouse.ner import NerUnavailableError, load_ner

    try:
        redactor.ner = load_ner(ner, ner_model)
    except NerUnavailableError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    return redactor


def _redactor(allow_ephemeral_key: bool):
    from tracehouse.redaction import MissingHashKeyError, Redactor

    try:
        return Redactor.from_env(allow_ephemeral=allow_ephemeral_key)
    except MissingHashKeyError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


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
        from tracehouse.otlp.decode import OTLPDecodeError
        from tracehouse.otlp.ingest import ingest_otlp_files
        from tracehouse.redaction import ArtifactStore

        redactor = _with_ner(_redactor(allow_ephemeral_key), ner, ner_model)
        artifacts = ArtifactStore(artifact_dir, lake=lake) if artifact_dir else None
        try:
            reports = ingest_otlp_files(
                lake, files, redactor, defaults=_defaults(default_environment, default_tenant),
                artifacts=artifacts,
            )
        except OTLPDecodeError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
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
        port: Annotated[int, typer.Option(help="Port (4318 is OTLP/HTTP's; 0 picks a free "
                                          "one).")] = 4318,
        batch_rows: Annotated[int, typer.Option(help="Write a batch at this many rows.")] = 5000,
        flush_seconds: Annotated[float, typer.Option(help="... or when the oldest buffered "
                                                     "rows are this old.")] = 2.0,
        max_buffer_rows: Annotated[int, typer.Option(help="Answer 503 + Retry-After above this "
                                                     "many buffered rows.")] = 100_000,
        max_body_mb: Annotated[float, typer.Option(help="Largest request body (413 above).")]
        = 16.0,
        spool: Annotated[bool, typer.Option(help="Spool accepted rows to <lake>/_spool before "
                                            "answering 2xx, so a crash loses nothing.")] = True,
        allow_ephemeral_key: EphemeralKeyOption = False,
        artifact_dir: ArtifactDirOption = None,
        default_environment: DefaultEnvironmentOption = "dev",
        default_tenant: DefaultTenantOption = "unknown",
    ) -> None:
        """OTLP/HTTP receiver: POST /v1/traces (protobuf or JSON), /v1/feedback, /v1/annotations.

        Point an OpenTelemetry SDK at it with
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://127.0.0.1:4318/v1/traces.
        SIGTERM flushes everything accepted and exits 0 (1 if acknowledged rows could not be
        landed: they stay in the spool).
        """
        from tracehouse.server import ServerConfig, serve

        redactor = _redactor(allow_ephemeral_key)
        lake.mkdir(parents=True, exist_ok=True)
        config = ServerConfig(
            lake=lake, host=host, port=port, batch_rows=batch_rows, flush_seconds=flush_seconds,
            max_buffer_rows=max_buffer_rows, max_body_bytes=int(max_body_mb * 1024 * 1024),
            spool=spool, artifact_dir=artifact_dir,
            defaults=_defaults(default_environment, default_tenant),
        )

        def ready(receiver) -> None:
            print(f"tracehouse serve: listening on http://{host}:{receiver.port} "
                  f"(lake {lake})", flush=True)

        code = serve(config, redactor, ready=ready)
        print("tracehouse serve: stopped, " + ("everything accepted is in the lake" if code == 0
              else "acknowledged rows are NOT in the lake (kept in the spool; see the log)"),
              flush=True)
        sys.stdout.flush()
        raise typer.Exit(code)
