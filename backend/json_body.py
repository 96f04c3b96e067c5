"""Request bodies parsed as JSON with an error that names the problem.

django-ninja turns any exception of its parser into a bare 400 "Cannot parse request body"; this
parser raises MalformedBody instead, which ninja keeps as that 400's cause and the API's error
handlers answer in its place (backend/errors.py). A body nested deeper than the JSON parser can
recurse (it counts against Python's recursion limit) is one such error, not a server fault.
"""

from __future__ import annotations

import json
from typing import cast

from django.http import HttpRequest
from ninja.parser import Parser
from ninja.types import DictStrAny

from backend.errors import MalformedBody


class JsonBodyParser(Parser):
    def parse_body(self, request: HttpRequest) -> DictStrAny:
        try:
            return cast(DictStrAny, json.loads(request.body))
        except RecursionError:
            raise MalformedBody("request body is nested too deeply to parse") from None
        except ValueError as exc:  # not JSON, or not UTF-8
            raise MalformedBody(f"request body is not valid JSON: {exc}") from None
