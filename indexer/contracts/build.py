"""Compile ``AssetRegistry.vy`` with the Vyper compiler from PyPI and write ``AssetRegistry.json``.

The build is committed beside its source so that running the project needs no
compiler (Vyper pins ``cbor2<6``, which the protocol cannot use, so it lives in
its own environment, ``.tools/vyper``, made by ``./dev``).
``tests/indexer/chains/test_contract.py`` recompiles the source with that
compiler and fails if the committed build differs, so the bytecode never
drifts from the source it claims to come from.

    .tools/vyper/bin/python indexer/contracts/build.py          # rewrite the build
    .tools/vyper/bin/python indexer/contracts/build.py --check  # exit 1 if it differs
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "AssetRegistry.vy"
BUILD = HERE / "AssetRegistry.json"
EVM_VERSION = "cancun"  # what both test chains (anvil, py-evm) and public chains run


def compile_registry() -> dict[str, object]:
    """The build record of the contract, compiled now from ``SOURCE``."""
    import vyper  # only in the compiler's own environment
    from vyper.compiler.settings import Settings

    source = SOURCE.read_text(encoding="utf-8")
    out = vyper.compile_code(
        source,
        output_formats=["abi", "bytecode", "bytecode_runtime"],
        settings=Settings(evm_version=EVM_VERSION),
    )
    return {
        "contract": "AssetRegistry",
        "compiler": f"vyper {vyper.__version__}",
        "evm_version": EVM_VERSION,
        "source_sha256": hashlib.sha256(source.encode()).hexdigest(),
        "abi": out["abi"],
        "bytecode": out["bytecode"],
        "bytecode_runtime": out["bytecode_runtime"],
    }


def render(build: dict[str, object]) -> str:
    return json.dumps(build, indent=1, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    text = render(compile_registry())
    if "--check" in argv:
        same = BUILD.exists() and BUILD.read_text(encoding="utf-8") == text
        print(
            "AssetRegistry.json matches its source" if same else "AssetRegistry.json differs from its source"
        )
        return 0 if same else 1
    BUILD.write_text(text, encoding="utf-8")
    print(f"wrote {BUILD}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
