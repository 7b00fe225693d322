#!/usr/bin/env python3
"""Every option an operator can meet is in a man page: each option of each
program's --help (coveyctl's subcommands walked from its own --help) in the
program's page, each key and table of examples/ks.toml and examples/gm.toml
(commented ones included: they are the defaults) in covey-ks.toml(5) and
covey-gm.toml(5), and each key of userspace/config/README.md's tables and
member paragraph in those pages too. Prints what is missing from which page."""
import argparse
import re
import subprocess
import sys
from pathlib import Path


def page_words(roff: Path) -> set:
    """The page as it reads: roff's escapes undone, then every token."""
    text = roff.read_text()
    text = re.sub(r"\\f[BIRP]", "", text)
    text = text.replace("\\-", "-").replace("\\&", "").replace("\\(em", " ")
    return set(re.findall(r"-{0,2}[A-Za-z0-9_][A-Za-z0-9_.-]*", text)) | set(re.findall(r"\[+[a-z_.]+\]+", text))


def help_options(argv: list) -> tuple:
    """(options, subcommands) of one CLI11 --help page."""
    out = subprocess.run(argv + ["--help"], capture_output=True, text=True, check=True).stdout
    options, subcommands, section = set(), [], None
    for line in out.splitlines():
        if re.match(r"^[A-Za-z]+:\s*$", line):
            section = line.strip().rstrip(":")
            continue
        if section == "Options":
            options.update(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", line.split("  ")[1] if line.startswith("  ") else line)[:2])
        elif section == "Subcommands" and line.startswith("  "):
            subcommands.append(line.split()[0])
    return options, subcommands


def walk(argv: list) -> set:
    options, subs = help_options(argv)
    for sub in subs:
        options |= walk(argv + [sub])
    return options


def toml_keys(path: Path) -> set:
    """Keys and tables of an example, the commented-out ones too."""
    keys = set()
    for line in path.read_text().splitlines():
        line = line.lstrip("#").strip()
        if m := re.match(r"^(\[\[?[a-z_.]+\]\]?)", line):
            keys.add(m.group(1))
        elif m := re.match(r"^([a-z_][a-z0-9_]*)\s*=", line):
            keys.add(m.group(1))
    return keys


def readme_keys(path: Path) -> tuple:
    """(key server keys, member keys) of the config README: the tables'
    first two columns, and the `[member]` and `[group]` paragraph."""
    ks, gm = set(), set()
    text = path.read_text()
    for line in text.splitlines():
        cells = line.split("|")
        if line.startswith("|") and len(cells) > 3 and not re.fullmatch(r"[-| ]+", line):
            for cell in cells[1:3]:
                for name in re.findall(r"`(\[\[?[a-z_.]+\]\]?|[a-z_][a-z0-9_]*)`", cell):
                    # The [metrics] tables list each daemon's metric families.
                    (gm if name.startswith("covey_gm_") else ks).add(name)
    member = text[text.index("`[member]`:"): text.index("Rekeys need no member configuration")]
    gm.update(k for k in re.findall(r"`(\[?[a-z_][a-z0-9_.]*\]?)`", member) if k not in ("true", "false"))
    return ks, gm


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True, type=Path)
    ap.add_argument("--source", required=True, type=Path)
    a = ap.parse_args()
    man = a.build / "docs/man"
    programs = {
        "covey-ks.8": a.build / "userspace/apps/covey-ks",
        "covey-gm.8": a.build / "userspace/apps/covey-gm",
        "coveyctl.8": a.build / "tools/coveyctl/coveyctl",
    }
    wanted = {page: walk([str(binary)]) for page, binary in programs.items()}
    ks_readme, gm_readme = readme_keys(a.source / "userspace/config/README.md")
    wanted["covey-ks.toml.5"] = toml_keys(a.source / "examples/ks.toml") | ks_readme
    wanted["covey-gm.toml.5"] = toml_keys(a.source / "examples/gm.toml") | gm_readme
    failed = False
    for page, names in wanted.items():
        have = page_words(man / page)
        missing = sorted(n for n in names if n not in have)
        print(f"{page}: {len(names)} names checked" + (f", missing: {' '.join(missing)}" if missing else ", all there"))
        failed |= bool(missing)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
