"""The docs parse as reStructuredText without a warning: a malformed table
or a stray markup character renders wrongly (or not at all) on a docs site,
and nothing else would notice."""
import glob
import io
import os

import docutils.core
import docutils.utils
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOCS = sorted(glob.glob(os.path.join(ROOT, "docs", "**", "*.rst"), recursive=True))


def rst_problems(text, source="<string>"):
    """docutils' messages of level WARNING and above, as text."""
    stream = io.StringIO()
    try:
        docutils.core.publish_doctree(
            text, source_path=source,
            settings_overrides={"report_level": docutils.utils.Reporter.WARNING_LEVEL,
                                "halt_level": docutils.utils.Reporter.SEVERE_LEVEL + 1,
                                "warning_stream": stream})
    except docutils.utils.SystemMessage as e:
        stream.write(str(e))
    return stream.getvalue()


def test_there_are_docs():
    names = {os.path.relpath(p, ROOT) for p in DOCS}
    assert {"docs/user-guide.rst", "docs/porting.rst",
            "docs/design/virtual-time.rst"} <= names, names


@pytest.mark.parametrize("path", DOCS, ids=lambda p: os.path.relpath(p, ROOT))
def test_doc_parses_without_warnings(path):
    with open(path, encoding="utf-8") as f:
        assert rst_problems(f.read(), path) == ""


def test_a_malformed_table_is_caught():
    table = ("====  =====\n"
             "key   value\n"
             "====  =====\n"
             "image build/guest x\n"      # the default spills into the margin
             "====  =====\n")
    assert "Malformed table" in rst_problems(table)
    assert "emphasis" in rst_problems("tests usb-hcd-* and the *slots\n")
