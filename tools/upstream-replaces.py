"""Print the replace and exclude lines of an upstream go.mod for a wrapper module to repeat (they
apply only inside the upstream repository). A replace by a directory of that repository
(``=> ./pkg/client``) becomes the published module at the upstream's own version.

    python3 tools/upstream-replaces.py GOMOD VERSION >> go.mod
"""

import re
import sys


def lines(text: str, keyword: str) -> list[str]:
    out = [line.strip() for line in re.findall(rf"^{keyword} ([^(\n].*)$", text, re.M)]
    for block in re.findall(rf"^{keyword} \((.*?)^\)", text, re.M | re.S):
        out += [line.strip() for line in block.splitlines() if line.strip() and not line.strip().startswith("//")]
    return out


def main(path: str, version: str) -> None:
    text = open(path).read()
    for line in lines(text, "replace"):
        old, _, new = (part.strip() for part in line.partition("=>"))
        if new.startswith("./"):
            new = f"{old.split()[0]} {version}"
        print(f"replace {old} => {new}")
    for line in lines(text, "exclude"):
        print(f"exclude {line}")


if __name__ == "__main__":
    main(*sys.argv[1:])
