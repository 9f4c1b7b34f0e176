"""Command-line options derived from the library's config models, so names, help text, defaults and
choices have one source: the pydantic field (`OptimizeConfig.val_limit` is `--val-limit`, its
description the help, its `Literal` the choices). A field added to a config model is an option of
the commands built from it, with no CLI edit. Nested models are flattened (`Budget.dollars` is
`--dollars`); a field may name its option (`json_schema_extra={"option": "budget"}`). The
`HARNESS_OPT_<OPTION>` variable of every option is set in one place too (`app.with_env_vars`).

The values typed on the command line are validated by the model itself, and a validation error
becomes one `error:` line naming the option (`config_from`), never a traceback.
"""

from __future__ import annotations

import functools
import inspect
import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

import typer
from pydantic import BaseModel, BeforeValidator, ValidationError
from pydantic.fields import FieldInfo

from harness_opt.errors import UserError

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class FieldOption:
    """One option and the model field it fills."""

    path: tuple[str, ...]
    """Field names from the top model down: ("budget", "wall_s")."""
    name: str
    """The option without dashes, underscored: "budget"; also the command function's parameter."""
    annotation: Any
    default: Any
    help: str

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def parameter(self) -> inspect.Parameter:
        decl = f"{self.flag}/--no-{self.flag[2:]}" if self.annotation is bool else self.flag
        info = typer.Option(decl, help=self.help, show_default=self.default is not None)
        return inspect.Parameter(
            self.name,
            inspect.Parameter.KEYWORD_ONLY,
            annotation=Annotated[self.annotation, info],
            default=self.default,
        )


def _strip_optional(annotation: Any) -> tuple[Any, bool]:
    if get_origin(annotation) in (Union, types.UnionType):
        members = [a for a in get_args(annotation) if a is not type(None)]
        if len(members) == 1:
            return members[0], len(members) < len(get_args(annotation))
    return annotation, False


def _cli_type(annotation: Any) -> Any:
    """The type the command line parses (a `Literal` gives the choices). A type with a
    before-validator (a duration) is read as text: the model parses it."""
    inner, optional = _strip_optional(annotation)
    if get_origin(inner) is Annotated:
        base, *meta = get_args(inner)
        inner = str if any(isinstance(m, BeforeValidator) for m in meta) else base
    if get_origin(inner) is list:
        return list[get_args(inner)[0]] | None  # type: ignore[misc]
    return inner | None if optional else inner


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    inner, _ = _strip_optional(annotation)
    return inner if isinstance(inner, type) and issubclass(inner, BaseModel) else None


def _option_name(name: str, info: FieldInfo) -> str:
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    return str(extra.get("option", name))


def field_options(
    model: type[BaseModel],
    *,
    exclude: Iterable[str] = (),
    only: Iterable[str] | None = None,
    defaults: dict[str, Any] | None = None,
) -> list[FieldOption]:
    """The options of `model`'s fields. `exclude`/`only` and `defaults` take dotted field paths
    ("budget.dollars"); `defaults` replaces a field's default on the command line only."""
    skip, keep, given = set(exclude), None if only is None else set(only), defaults or {}
    out: list[FieldOption] = []

    def walk(cls: type[BaseModel], prefix: tuple[str, ...], parent_default: Any) -> None:
        for name, info in cls.model_fields.items():
            path = (*prefix, name)
            dotted = ".".join(path)
            if dotted in skip:
                continue
            default = info.get_default(call_default_factory=True)
            if parent_default is not None:
                default = getattr(parent_default, name, default)
            nested = _nested_model(info.annotation)
            if nested is not None:
                walk(nested, path, default)
                continue
            if keep is not None and dotted not in keep:
                continue
            annotation = _cli_type(info.annotation)
            if any(isinstance(m, BeforeValidator) for m in info.metadata):
                annotation = str | None if annotation != _strip_optional(annotation)[0] else str
            default = given.get(dotted, default)
            if isinstance(default, Path) or (annotation is str and isinstance(default, float)):
                default = f"{default:g}" if isinstance(default, float) else str(default)
            out.append(
                FieldOption(
                    path=path,
                    name=_option_name(name, info),
                    annotation=annotation,
                    default=None if isinstance(default, list) and not default else default,
                    help=info.description or "",
                )
            )

    walk(model, (), None)
    names = [o.name for o in out]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise ValueError(f"{model.__name__}: options named twice: {clashes}; exclude one or name it")
    return out


@dataclass(frozen=True)
class Options:
    """The derived options' values as typed, to build the config model from."""

    fields: tuple[FieldOption, ...]
    values: dict[str, Any]

    def given(self) -> dict[str, Any]:
        """Nested field values of the options that carry a value (None leaves the model's default)."""
        nested: dict[str, Any] = {}
        for o in self.fields:
            value = self.values.get(o.name)
            if value is None:
                continue
            target = nested
            for key in o.path[:-1]:
                target = target.setdefault(key, {})
            target[o.path[-1]] = list(value) if isinstance(value, tuple) else value
        return nested

    def flag_of(self, loc: tuple[str | int, ...]) -> str:
        path = tuple(str(p) for p in loc)
        for o in self.fields:
            if path[: len(o.path)] == o.path:
                return o.flag
        return ".".join(path) or "options"

    def build(self, model: type[M], **fixed: Any) -> M:
        return config_from(model, {**self.given(), **fixed}, self.flag_of)


def config_from(
    model: type[M], values: dict[str, Any], where: Callable[[tuple[str | int, ...]], str] | None = None
) -> M:
    """The one place a command-line validation error becomes a `UserError`: one line, naming the
    option (`--trials: input should be greater than or equal to 1`)."""
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(first["loc"])
        flag = where(loc) if where is not None else ".".join(str(p) for p in loc)
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        message = first["msg"].removeprefix("Value error, ")
        raise UserError(f"{message}{more}", where=flag, fix="see --help for what it takes") from None


def derived(
    model: type[BaseModel],
    *,
    exclude: Iterable[str] = (),
    only: Iterable[str] | None = None,
    defaults: dict[str, Any] | None = None,
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Decorate a command taking `options: Options`: the model's fields become its options."""
    fields = tuple(field_options(model, exclude=exclude, only=only, defaults=defaults))

    def wrap(fn: Callable[..., None]) -> Callable[..., None]:
        signature = inspect.signature(fn, eval_str=True)
        own = [p for p in signature.parameters.values() if p.name != "options"]
        clashes = {p.name for p in own} & {o.name for o in fields}
        if clashes:
            raise ValueError(f"{fn.__name__}: parameters also derived from {model.__name__}: {clashes}")
        params = own + [o.parameter() for o in fields]

        @functools.wraps(fn)
        def command(**kwargs: Any) -> None:
            values = {o.name: kwargs.pop(o.name, None) for o in fields}
            fn(**kwargs, options=Options(fields, values))

        command.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        del command.__wrapped__  # typer must see the derived signature, not the function's
        return command

    return wrap
