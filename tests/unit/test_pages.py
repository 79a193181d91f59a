"""Pages of list endpoints: they iterate their items across pages, as openai-python's do."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from maas_sdk import AsyncPage, AsyncPager, FileObject, Model, NotFoundError, Page

from .fakes import error_response, json_response, make_async_client, make_client


def a_file(index: int) -> dict[str, Any]:
    return {"id": f"file-{index}", "bytes": 10, "created_at": index, "filename": f"f{index}.jsonl",
            "purpose": "fine-tune"}


class Lists:
    """`/models` answers one page; `/files` pages through seven files `limit` at a time (3 by default)."""

    def __init__(self) -> None:
        self.files = [a_file(i) for i in range(7)]
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path == "/v1/models":
            return json_response({"object": "list", "data": [{"id": "a"}, {"id": "b"}]})
        after = request.url.params.get("after")
        start = 0 if after is None else [f["id"] for f in self.files].index(after) + 1
        limit = int(request.url.params.get("limit", 3))
        data = self.files[start:start + limit]
        return json_response({"object": "list", "data": data, "has_more": start + limit < len(self.files)})

    def afters(self) -> list[str | None]:
        return [r.url.params.get("after") for r in self.requests]


def test_iterating_models_yields_models_not_fields() -> None:
    page = make_client(Lists()).models.list()
    assert isinstance(page, Page)
    assert [m.id for m in page] == ["a", "b"]
    assert all(isinstance(m, Model) for m in page)
    assert [m.id for m in page.data] == ["a", "b"]
    assert page.has_more is False and page.object == "list" and page.request_id == "req-1"
    assert not page.has_next_page()
    with pytest.raises(RuntimeError, match="last page"):
        page.get_next_page()


def test_files_iterate_across_pages_fetching_each_when_reached() -> None:
    lists = Lists()
    page = make_client(lists).files.list(purpose="fine-tune")
    assert [f.id for f in page.data] == ["file-0", "file-1", "file-2"] and page.has_more
    assert lists.afters() == [None]
    items = iter(page)
    assert [next(items).id for _ in range(4)] == ["file-0", "file-1", "file-2", "file-3"]
    assert lists.afters() == [None, "file-2"], "the second page is fetched only when reached"
    assert [f.id for f in items] == ["file-4", "file-5", "file-6"]
    assert lists.afters() == [None, "file-2", "file-5"]
    assert {r.url.params["purpose"] for r in lists.requests} == {"fine-tune"}, "every page keeps the filters"
    assert all(isinstance(f, FileObject) for f in page)


def test_pages_one_by_one() -> None:
    lists = Lists()
    first = make_client(lists).files.list(limit=2, order="asc")
    pages = list(first.iter_pages())
    assert [[f.id for f in p.data] for p in pages] == [["file-0", "file-1"], ["file-2", "file-3"],
                                                       ["file-4", "file-5"], ["file-6"]]
    assert [p.has_next_page() for p in pages] == [True, True, True, False]
    second = first.get_next_page()
    assert [f.id for f in second.data] == ["file-2", "file-3"]
    assert lists.requests[-1].url.params["limit"] == "2" and lists.requests[-1].url.params["order"] == "asc"
    assert "has_more=True" in repr(first)


def test_starting_after_an_id() -> None:
    lists = Lists()
    assert [f.id for f in make_client(lists).files.list(after="file-4")] == ["file-5", "file-6"]


def test_sync_list_raises_at_once_on_an_error_answer() -> None:
    with pytest.raises(NotFoundError):
        make_client(lambda request: error_response(404)).files.list()


async def test_async_pager_awaits_to_a_page_and_iterates_every_item() -> None:
    lists = Lists()
    client = make_async_client(lists)
    pager = client.files.list()
    assert isinstance(pager, AsyncPager)
    assert lists.requests == []
    assert [f.id async for f in pager] == [f"file-{i}" for i in range(7)]
    assert lists.afters() == [None, "file-2", "file-5"]
    page = await client.files.list(limit=4)
    assert isinstance(page, AsyncPage)
    assert [f.id for f in page.data] == ["file-0", "file-1", "file-2", "file-3"] and page.has_next_page()
    assert [[f.id for f in p.data] async for p in page.iter_pages()] == [
        ["file-0", "file-1", "file-2", "file-3"], ["file-4", "file-5", "file-6"]]
    assert [f.id async for f in page] == [f"file-{i}" for i in range(7)]
    last = await page.get_next_page()
    assert not last.has_next_page()
    with pytest.raises(RuntimeError, match="last page"):
        await last.get_next_page()
    models = await client.models.list()
    assert [m.id for m in models.data] == ["a", "b"]
    assert [m.id async for m in client.models.list()] == ["a", "b"]


def test_a_server_that_ignores_the_cursor_is_not_walked_forever() -> None:
    requests: list[httpx.Request] = []

    def same_page(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return json_response({"object": "list", "data": [a_file(0), a_file(1)], "has_more": True})

    assert [f.id for f in make_client(same_page).files.list()] == ["file-0", "file-1", "file-0", "file-1"]
    assert [r.url.params.get("after") for r in requests] == [None, "file-1"]


def test_a_page_dumps_as_its_list_body() -> None:
    page = make_client(Lists()).files.list(limit=2)
    dumped = page.model_dump(mode="json", exclude_none=True)
    assert dumped["object"] == "list" and dumped["has_more"] is True
    assert [f["id"] for f in dumped["data"]] == ["file-0", "file-1"]
