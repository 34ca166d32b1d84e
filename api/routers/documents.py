"""GET /v1/documents and /v1/documents/{doc_id}: the sources, so any client can check a quote."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import PipelineDep
from api.responses import errors
from api.schemas import DocumentList, DocumentOut, DocumentSummary

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
