"""A reStructuredText directive for the Snakemake HTML report: a figure embedded as a data URI.

The report's landing page (report/workflow.rst) shows the law figures. Snakemake's own
`embeddedfigure` directive (snakemake 9.27) sets the data URI only after docutils has built
the image node, so the page links the PNG by its relative path and shows a broken image
once the report is moved or opened from elsewhere. `florenz-figure` replaces the argument
before docutils reads it. Kept out of florenz_lib.report so that parsing the Snakefile does
not import statsmodels and matplotlib.
"""
from __future__ import annotations

from docutils.parsers.rst import directives
from docutils.parsers.rst.directives.images import Figure

DIRECTIVE = "florenz-figure"


class EmbeddedFigure(Figure):
    """`.. florenz-figure:: path/to.png` with Figure's options and caption, inlined as base64."""

    def run(self):
        from snakemake.report.common import data_uri_from_file

        self.arguments[0] = data_uri_from_file(directives.uri(self.arguments[0]))
        return super().run()


def register() -> None:
    """Make `.. florenz-figure::` available to docutils in this process (idempotent)."""
    directives.register_directive(DIRECTIVE, EmbeddedFigure)
