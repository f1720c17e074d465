"""Fails unless the client openapi-python-client generated has a function
for every operation of the OpenAPI document (it drops an operation whose
operationId repeats another's, silently).

usage: check_python_client.py OPENAPI_JSON CLIENT_PACKAGE_DIR
"""

import importlib
import json
import pathlib
import re
import sys

METHODS = {"get", "put", "post", "patch", "delete", "head", "options", "trace"}


def snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def main() -> int:
    document, package_dir = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    operations = [
        (method.upper(), path, operation.get("operationId"))
        for path, item in json.loads(document.read_text())["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]
    sys.path.insert(0, str(package_dir.parent))
    package = package_dir.name
    modules = {
        module.stem: f"{package}.api.{module.parent.name}.{module.stem}"
        for module in (package_dir / "api").glob("*/*.py")
        if module.stem != "__init__"
    }
    missing = []
    seen = {}
    for method, path, operation_id in operations:
        if operation_id in seen:
            missing.append(f"{method} {path} ({operation_id}: also {seen[operation_id]}'s id, one function for both)")
            continue
        seen[operation_id] = f"{method} {path}"
        module_name = modules.get(snake_case(operation_id or ""))
        module = importlib.import_module(module_name) if module_name else None
        if not all(callable(getattr(module, f, None)) for f in ("sync_detailed", "asyncio_detailed")):
            missing.append(f"{method} {path} ({operation_id})")
    print(f"{len(operations)} operations, {len(modules)} generated modules, {len(missing)} without a function")
    for entry in missing:
        print(f"  no generated function: {entry}")
    if len(modules) != len(operations):
        print("  the generated modules do not match the operations one to one")
    return 1 if missing or len(modules) != len(operations) else 0


if __name__ == "__main__":
    sys.exit(main())
