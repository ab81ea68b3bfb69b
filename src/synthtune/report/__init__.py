"""The run report: one self-contained HTML file (plots inlined as PNG data URIs)."""
