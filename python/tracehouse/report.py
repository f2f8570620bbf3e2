"""`tracehouse report`: execute the regression notebook headless, render self-contained HTML.

The notebook (``notebooks/regression_report.ipynb``) reads only the published marts. papermill
runs it with a kernel that is this very interpreter (a kernelspec written to a temporary
``JUPYTER_PATH`` at run time, so a fresh clone or a CI runner needs no ``~/.local/share/jupyter``
state and no ``ipykernel install``), then nbconvert's HTMLExporter renders it without the code
cells; plots are inline PNGs (``data:`` URIs) and no script or stylesheet is loaded from elsewhere.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tracehouse.errors import TracehouseError

KERNEL_NAME = "tracehouse-report"
NOTEBOOK_ENV = "TRACEHOUSE_REPORT_NOTEBOOK"


class ReportError(TracehouseError, RuntimeError):
    """The notebook could not be executed or rendered; the message says which cell failed."""


@dataclass
class ReportResult:
    """What :func:`build_report` wrote."""

    html: Path
    images: int  # embedded PNG plots
    seconds: float
    executed_notebook: Path | None = None


def notebook_path() -> Path:
    """The regression notebook: $TRACEHOUSE_REPORT_NOTEBOOK, else the checkout's ``notebooks/``."""
    env = os.environ.get(NOTEBOOK_ENV)
    if env:
        return Path(env)
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "notebooks" / "regression_report.ipynb"
        if candidate.is_file():
            return candidate
    raise ReportError(f"cannot find notebooks/regression_report.ipynb; set {NOTEBOOK_ENV}")


@contextmanager
def kernel_for_this_python() -> Iterator[str]:
    """A kernelspec named :data:`KERNEL_NAME` that runs ``sys.executable``, visible to Jupyter
    while the context is open (through ``JUPYTER_PATH``); yields the kernel name."""
    with tempfile.TemporaryDirectory(prefix="tracehouse-kernel-") as tmp:
        spec_dir = Path(tmp) / "kernels" / KERNEL_NAME
        spec_dir.mkdir(parents=True)
        spec = {
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}",
                     "--IPKernelApp.log_level=CRITICAL"],
            "display_name": "tracehouse (this Python)",
            "language": "python",
            "metadata": {"debugger": False},
        }
        (spec_dir / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
        saved = os.environ.get("JUPYTER_PATH")
        os.environ["JUPYTER_PATH"] = tmp + (os.pathsep + saved if saved else "")
        # Keep kernels from touching the user's home (CI runners may have none writable).
        saved_mpl = os.environ.get("MPLBACKEND")
        os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
        try:
            yield KERNEL_NAME
        finally:
            if saved is None:
                os.environ.pop("JUPYTER_PATH", None)
            else:
                os.environ["JUPYTER_PATH"] = saved
            if saved_mpl is None:
                os.environ.pop("MPLBACKEND", None)
            else:
                os.environ["MPLBACKEND"] = saved_mpl


def execute_notebook(
    output: Path,
    parameters: dict[str, object],
    *,
    notebook: Path | None = None,
    timeout: int = 600,
) -> Path:
    """Execute the regression notebook with ``parameters`` into ``output`` (.ipynb)."""
    import logging

    import papermill as pm

    logging.getLogger("papermill").setLevel(logging.WARNING)
    source = notebook or notebook_path()
    with kernel_for_this_python() as kernel:
        try:
            pm.execute_notebook(
                str(source),
                str(output),
                parameters=parameters,
                kernel_name=kernel,
                progress_bar=False,
                log_output=False,
                execution_timeout=timeout,
                cwd=str(source.parent),
            )
        except pm.PapermillExecutionError as exc:
            raise ReportError(
                f"cell {exc.exec_count} failed: {exc.ename}: {exc.evalue} "
                f"(executed notebook kept at {output})"
            ) from None
    return output


_EXTERNAL = re.compile(r"<script[^>]+src=[\"']https?://[^>]*>\s*</script>", re.I)
_EXTERNAL_CSS = re.compile(r"<link[^>]+href=[\"']https?://[^>]*>", re.I)


def render_html(executed: Path, title: str) -> tuple[str, int]:
    """Self-contained HTML of an executed notebook without its code; (html, embedded images)."""
    import logging

    import nbformat
    from nbconvert import HTMLExporter

    logging.getLogger("traitlets").setLevel(logging.ERROR)

    nb = nbformat.read(str(executed), as_version=4)
    nb.cells = [c for c in nb.cells
                if "parameters" not in c.metadata.get("tags", [])
                and "injected-parameters" not in c.metadata.get("tags", [])]
    exporter = HTMLExporter(
        exclude_input=True,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
        embed_images=True,
    )
    exporter.exclude_anchor_links = True
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title}})
    # Nothing from elsewhere: MathJax and require.js are not needed for plots and tables.
    body = _EXTERNAL.sub("", body)
    body = _EXTERNAL_CSS.sub("", body)
    images = len(re.findall(r"<img[^>]+src=\"data:image/png;base64,", body))
    return body, images


def build_report(
    warehouse: Path | str,
    out: Path | str,
    *,
    start: str | None = None,
    end: str | None = None,
    metric: str | None = None,
    segment: str | None = None,
    truth: Path | str | None = None,
    executed_notebook: Path | str | None = None,
    timeout: int = 600,
) -> ReportResult:
    """Execute the regression notebook on ``warehouse``'s published marts; write HTML to ``out``."""
    started = time.perf_counter()
    warehouse = Path(warehouse).resolve()
    if not (warehouse / "marts").is_dir():
        raise ReportError(
            f"no published marts in {warehouse / 'marts'}: run `tracehouse run` first"
        )
    out = Path(out)
    parameters: dict[str, object] = {
        "warehouse": str(warehouse),
        "start": start,
        "end": end,
        "metric": metric,
        "segment": segment,
        "truth": str(Path(truth).resolve()) if truth else None,
    }
    with tempfile.TemporaryDirectory(prefix="tracehouse-report-") as tmp:
        executed = Path(executed_notebook) if executed_notebook else Path(tmp) / "report.ipynb"
        executed.parent.mkdir(parents=True, exist_ok=True)
        execute_notebook(executed.resolve(), parameters, timeout=timeout)
        body, images = render_html(executed, title=f"tracehouse regression report: {warehouse}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_name(f".{out.name}.tmp")
    tmp_out.write_text(body, encoding="utf-8")
    tmp_out.replace(out)
    return ReportResult(out, images, time.perf_counter() - started,
                        Path(executed_notebook) if executed_notebook else None)
