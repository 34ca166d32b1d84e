"""/v1/documents: list, read, add or replace, and delete the indexed sources.

Writes are serialised. Each one writes the source file atomically, then a new index version
(embedding only the changed document), then swaps the live pipeline by reference: a question in
flight keeps the index it started with, the next one sees the new index, none sees a torn one.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from api.deps import PipelineDep, SettingsDep, StateDep
from api.responses import errors
from api.schemas import DocumentChange, DocumentIn, DocumentList, DocumentOut, DocumentSummary
from index.documents import with_title, write_source
from index.store import save_update, update_index
from qa.errors import BadDocument, Conflict
from qa.lang.text import is_blank
from qa.pipeline import Pipeline

router = APIRouter(prefix="/v1/documents", tags=["documents"])


@router.get("", response_model=DocumentList, responses=errors(401, 503))
def list_documents(pipeline: PipelineDep) -> DocumentList:
    """Ids, titles and lengths of the indexed documents."""
    return DocumentList(
        documents=[
            DocumentSummary(doc_id=d.doc_id, title=d.title, length=len(d.text)) for d in pipeline.documents.values()
        ]
    )


@router.get("/{doc_id}", response_model=DocumentOut, responses=errors(401, 404, 503))
def get_document(doc_id: str, pipeline: PipelineDep) -> DocumentOut:
    """The full text of one document; citation offsets index this `text`."""
    doc = pipeline.document(doc_id)
    return DocumentOut(doc_id=doc.doc_id, title=doc.title, text=doc.text)


def _apply(pipeline: Pipeline, settings, *, upsert=None, remove: str | None = None) -> Pipeline:  # noqa: ANN001
    source_dir, index_dir = Path(settings.source_dir), Path(settings.index_dir)
    if upsert is not None:
        write_source(source_dir, upsert)
    elif remove is not None:
        (source_dir / f"{remove}.txt").unlink(missing_ok=True)
    data, changes = update_index(pipeline.data, pipeline.embedder, upsert=upsert, remove=remove)
    save_update(data, index_dir, pipeline.data)  # a delta on the live version: only this document's rows
    return pipeline.with_data(data, changes.rows_from)


@router.post("", response_model=DocumentChange, status_code=201, responses=errors(400, 401, 413, 422, 503))
async def put_document(
    body: DocumentIn, pipeline: PipelineDep, state: StateDep, settings: SettingsDep, request: Request
) -> DocumentChange:
    """Add a document, or replace the one with the same `doc_id`; visible to the next question."""
    if "\x00" in body.text or is_blank(body.text):  # the schema says the same; kept for direct callers
        raise BadDocument("text must be non-blank and contain no NUL bytes")
    doc = with_title(body.doc_id, body.title, body.text)
    async with request.app.state.documents_lock:
        current = state.pipeline or pipeline
        state.pipeline = await run_in_threadpool(_apply, current, settings, upsert=doc)
    new = state.pipeline
    return DocumentChange(
        doc_id=doc.doc_id,
        title=doc.title,
        length=len(doc.text),
        passages=sum(p.doc_id == doc.doc_id for p in new.data.passages),
        documents=len(new.documents),
        index_version=new.data.version,
    )


@router.delete("/{doc_id}", response_model=DocumentChange, responses=errors(401, 404, 409, 503))
async def delete_document(
    doc_id: str, pipeline: PipelineDep, state: StateDep, settings: SettingsDep, request: Request
) -> DocumentChange:
    """Remove a document from the corpus and the index."""
    async with request.app.state.documents_lock:
        current = state.pipeline or pipeline
        doc = current.document(doc_id)
        if len(current.documents) == 1:
            raise Conflict("cannot delete the last document; add another first")
        state.pipeline = await run_in_threadpool(_apply, current, settings, remove=doc_id)
    return DocumentChange(
        doc_id=doc_id,
        title=doc.title,
        length=len(doc.text),
        passages=0,
        documents=len(state.pipeline.documents),
        index_version=state.pipeline.data.version,
    )
