"""Regenerate ``acme-employee-handbook.pdf`` from the text version (needs fpdf2).

Run: .venv/bin/python data/make_sample_pdf.py. Each numbered section starts a
new page when it would not fit, and every page carries a running header and a
page number, so the PDF exercises header/footer removal and page citations.
"""

from __future__ import annotations

from pathlib import Path

from fpdf import FPDF

HERE = Path(__file__).resolve().parent


class HandbookPDF(FPDF):
    """A4 pages with a running header and footer."""

    def header(self) -> None:  # noqa: D102
        self.set_font("Helvetica", "I", 9)
        self.cell(0, 8, "Acme Robotics - Employee Handbook", align="C")
        self.ln(12)

    def footer(self) -> None:  # noqa: D102
        self.set_y(-15)
        self.set_font("Helvetica", "", 9)
        self.cell(0, 10, str(self.page_no()), align="C")


def main() -> None:
    """Write the PDF next to this script."""
    text = (HERE / "sources" / "acme-employee-handbook.txt").read_text(encoding="utf-8")
    title, _, body = text.partition("\n\n")
    sections = body.strip().split("\n\n")
    pdf = HandbookPDF(format="A4")
    pdf.set_auto_page_break(True, margin=20)
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 16)
    pdf.multi_cell(0, 10, title.title(), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    for i, section in enumerate(sections):
        heading, _, para = section.partition("\n")
        if i and i % 3 == 0:
            pdf.add_page()
        pdf.set_font("Helvetica", "B", 12)
        pdf.multi_cell(0, 8, heading, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", "", 11)
        pdf.multi_cell(0, 6, para.replace("\n", " "), new_x="LMARGIN", new_y="NEXT")
        pdf.ln(4)
    pdf.output(str(HERE / "acme-employee-handbook.pdf"))


if __name__ == "__main__":
    main()
