"""A small in-repo stand-in for `buf lint` and `buf breaking` (buf itself is not available here).

Style (ecglens.v1 only; the vendored Open Inference Protocol is third-party and exempt): package
`ecglens.v1`; PascalCase messages, enums, services and methods; lower_snake fields; UPPER_SNAKE
enum values prefixed with the enum's name, the zero value *_UNSPECIFIED; a leading comment on every
message, field, enum, enum value, service and method; a deprecated field says so in its comment.
Stability (every package): each field and enum value in protos/field_numbers.json keeps its number,
label and type. Run `python -m protos.lint` to check, `--update-snapshot` to record new fields.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path

from google.protobuf import descriptor_pb2

from protos.generate import PACKAGES, PROTO_ROOT, package_dir

STYLE_PACKAGES = ("ecglens.v1",)
SNAPSHOT = PROTO_ROOT / "field_numbers.json"
# Published before the rules; renaming them would break every caller, so they are exempt by name.
LEGACY = {
    "ecglens.v1.DType.DTYPE_UNSPECIFIED": "enum value prefix (the strict prefix of DType is D_TYPE_)",
    "ecglens.v1.DType.FLOAT32": "enum value prefix (callers use tensor_pb2.FLOAT32)",
    "ecglens.v1.DType.FLOAT16": "enum value prefix (callers use tensor_pb2.FLOAT16)",
}

PASCAL = re.compile(r"^[A-Z][a-zA-Z0-9]*$")
LOWER_SNAKE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
UPPER_SNAKE = re.compile(r"^[A-Z][A-Z0-9]*(_[A-Z0-9]+)*$")
# Path tags of descriptor.proto, as SourceCodeInfo.Location.path spells them.
FILE_MESSAGE, FILE_ENUM, FILE_SERVICE = 4, 5, 6
MESSAGE_FIELD, MESSAGE_NESTED, MESSAGE_ENUM = 2, 3, 4
ENUM_VALUE, SERVICE_METHOD = 2, 2


def compile_files(root: Path, files: list[str]) -> descriptor_pb2.FileDescriptorSet:
    """Descriptors of files (relative to root, imports resolved there) with their comments."""
    from grpc_tools import protoc
    import grpc_tools

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "set.pb"
        args = ["protoc", f"-I{root}", f"-I{Path(grpc_tools.__file__).parent / '_proto'}",
                f"--descriptor_set_out={out}", "--include_source_info", *files]
        if protoc.main(args) != 0:
            raise ValueError(f"protoc failed on {files}")
        return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


def package_files(package: str) -> list[descriptor_pb2.FileDescriptorProto]:
    """The compiled .proto files of one package of protos/."""
    files = sorted(str(p.relative_to(PROTO_ROOT)) for p in package_dir(package).glob("*.proto"))
    return list(compile_files(PROTO_ROOT, files).file)


def upper_snake(name: str) -> str:
    """PascalCase to UPPER_SNAKE: ProbeKind -> PROBE_KIND."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).upper()


class _Linter:
    """Collects style problems of one file, each naming the element's full name."""

    def __init__(self, fd: descriptor_pb2.FileDescriptorProto) -> None:
        self.fd, self.problems = fd, []
        self.comments = {tuple(loc.path): loc.leading_comments.strip() for loc in fd.source_code_info.location}

    def report(self, name: str, problem: str) -> None:
        if name not in LEGACY:
            self.problems.append(f"{self.fd.name}: {name}: {problem}")

    def element(self, path: tuple[int, ...], name: str, short: str, pattern: re.Pattern, style: str) -> str:
        """Check one element's name and leading comment; return its comment."""
        if not pattern.match(short):
            self.report(name, f"name {short!r} is not {style}")
        comment = self.comments.get(path, "")
        if not comment:
            self.report(name, "has no leading comment")
        return comment

    def enum(self, enum: descriptor_pb2.EnumDescriptorProto, path: tuple[int, ...], scope: str) -> None:
        name = f"{scope}.{enum.name}"
        self.element(path, name, enum.name, PASCAL, "PascalCase")
        prefix = upper_snake(enum.name) + "_"
        for i, value in enumerate(enum.value):
            value_name = f"{name}.{value.name}"
            self.element((*path, ENUM_VALUE, i), value_name, value.name, UPPER_SNAKE, "UPPER_SNAKE")
            if not value.name.startswith(prefix):
                self.report(value_name, f"value is not prefixed with {prefix}")
            if value.number == 0 and value.name != prefix + "UNSPECIFIED":
                self.report(value_name, f"the zero value must be {prefix}UNSPECIFIED")

    def message(self, message: descriptor_pb2.DescriptorProto, path: tuple[int, ...], scope: str) -> None:
        if message.options.map_entry:  # generated for map<,> fields; named by protoc
            return
        name = f"{scope}.{message.name}"
        self.element(path, name, message.name, PASCAL, "PascalCase")
        for i, field in enumerate(message.field):
            comment = self.element((*path, MESSAGE_FIELD, i), f"{name}.{field.name}", field.name, LOWER_SNAKE,
                                   "lower_snake_case")
            if field.options.deprecated and comment and "deprecated" not in comment.lower():
                self.report(f"{name}.{field.name}", "is deprecated but its comment does not say so")
        for i, nested in enumerate(message.nested_type):
            self.message(nested, (*path, MESSAGE_NESTED, i), name)
        for i, enum in enumerate(message.enum_type):
            self.enum(enum, (*path, MESSAGE_ENUM, i), name)

    def run(self) -> list[str]:
        fd, scope = self.fd, self.fd.package
        if fd.package != "ecglens.v1":
            self.problems.append(f"{fd.name}: package is {fd.package!r}, not 'ecglens.v1'")
        for i, message in enumerate(fd.message_type):
            self.message(message, (FILE_MESSAGE, i), scope)
        for i, enum in enumerate(fd.enum_type):
            self.enum(enum, (FILE_ENUM, i), scope)
        for i, service in enumerate(fd.service):
            self.element((FILE_SERVICE, i), f"{scope}.{service.name}", service.name, PASCAL, "PascalCase")
            for j, method in enumerate(service.method):
                self.element((FILE_SERVICE, i, SERVICE_METHOD, j), f"{scope}.{service.name}.{method.name}",
                             method.name, PASCAL, "PascalCase")
        return self.problems


def lint_file(fd: descriptor_pb2.FileDescriptorProto) -> list[str]:
    """Style problems of one compiled file (empty when it is clean)."""
    return _Linter(fd).run()


def lint_text(text: str, name: str = "ecglens/v1/candidate.proto") -> list[str]:
    """Style problems of a .proto source text (compiled on its own, so it may import only well-known types)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return [p for fd in compile_files(Path(tmp), [name]).file if fd.name == name for p in lint_file(fd)]


def style_problems() -> list[str]:
    """Style problems of every linted package."""
    return [p for package in STYLE_PACKAGES for fd in package_files(package) for p in lint_file(fd)]


def _field_signature(field: descriptor_pb2.FieldDescriptorProto) -> str:
    label = descriptor_pb2.FieldDescriptorProto.Label.Name(field.label).removeprefix("LABEL_").lower()
    kind = field.type_name or descriptor_pb2.FieldDescriptorProto.Type.Name(field.type).removeprefix("TYPE_").lower()
    return f"{field.number} {label} {kind}"


def _numbers_of(scope: str, messages, enums, out: dict[str, str]) -> None:
    for enum in enums:
        for value in enum.value:
            out[f"{scope}.{enum.name}.{value.name}"] = str(value.number)
    for message in messages:
        name = f"{scope}.{message.name}"
        for field in message.field:
            out[f"{name}.{field.name}"] = _field_signature(field)
        _numbers_of(name, message.nested_type, message.enum_type, out)


def field_numbers(files: list[descriptor_pb2.FileDescriptorProto]) -> dict[str, str]:
    """{full field or enum value name: "number label type" (fields) or "number" (enum values)}."""
    out: dict[str, str] = {}
    for fd in files:
        _numbers_of(fd.package, fd.message_type, fd.enum_type, out)
    return dict(sorted(out.items()))


def current_numbers() -> dict[str, str]:
    """field_numbers of every package under protos/."""
    return field_numbers([fd for package in PACKAGES for fd in package_files(package)])

# Recorded fields deliberately replaced under the same number, each by the field that now holds it.
# inference.ModelMetadataResponse field 6: upstream OIP's map<string, string> `properties` cannot parse
# what Seldon MLServer sends there (map<string, InferParameter> `parameters`), so the vendored proto
# follows MLServer (protos/generate.py INFERENCE_PATCHES says why). The snapshot keeps the old entries
# as history; only these names may vanish, and only while their replacement holds the same number.
REPLACED = {
    "inference.ModelMetadataResponse.properties": "inference.ModelMetadataResponse.parameters",
    "inference.ModelMetadataResponse.PropertiesEntry.key": "inference.ModelMetadataResponse.ParametersEntry.key",
    "inference.ModelMetadataResponse.PropertiesEntry.value": "inference.ModelMetadataResponse.ParametersEntry.value",
}


def _replaced(name: str, snapshot: dict[str, str], current: dict[str, str]) -> bool:
    """True when a vanished snapshot field is one of REPLACED and its replacement keeps its number."""
    new = REPLACED.get(name)
    return new is not None and new in current and current[new].split()[0] == snapshot[name].split()[0]


def stability_problems(current: dict[str, str], snapshot: dict[str, str]) -> list[str]:
    """Snapshot entries that vanished or changed, and new entries the snapshot does not record yet."""
    problems = [f"{name}: was {was!r}, now {current[name]!r} (never renumber or retype)"
                for name, was in snapshot.items() if name in current and current[name] != was]
    problems += [f"{name}: removed (mark its number reserved; only then edit the snapshot by hand)"
                 for name in snapshot if name not in current and not _replaced(name, snapshot, current)]
    problems += [f"{name}: new ({current[name]}); record it with `python -m protos.lint --update-snapshot`"
                 for name in current if name not in snapshot]
    return problems


def main(argv: list[str] | None = None) -> int:
    """Check style and stability; with --update-snapshot, add new fields to the snapshot first."""
    parser = argparse.ArgumentParser(prog="python -m protos.lint", description=__doc__)
    parser.add_argument("--update-snapshot", action="store_true",
                        help="record new fields and enum values (never rewrites or drops recorded ones)")
    args = parser.parse_args(argv)
    current = current_numbers()
    snapshot = json.loads(SNAPSHOT.read_text()) if SNAPSHOT.exists() else {}
    if args.update_snapshot:
        snapshot.update({name: sig for name, sig in current.items() if name not in snapshot})
        SNAPSHOT.write_text(json.dumps(dict(sorted(snapshot.items())), indent=1) + "\n")
    problems = style_problems() + stability_problems(current, snapshot)
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
