"""OpenAI chat-completions wire format (the subset chat front ends and the official SDKs use)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, field_validator

from api.schemas import CitationOut, PassageOut, no_str_or_bool


class TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: str = "text"
    text: str = ""


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(p.text for p in self.content if p.type == "text")


class ChatRequest(BaseModel):
    """Unknown standard fields (top_p, n, stop, tools, ...) are accepted and ignored."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [{"model": "newsqa", "messages": [{"role": "user", "content": "How much is CSC saving?"}]}]
        },
    )
    model: str = Field("newsqa", description="Any id is accepted; answers always come from this server's pipeline.")
    messages: list[ChatMessage] = Field(..., min_length=1, max_length=200)
    stream: StrictBool = False
    max_tokens: int | None = Field(
        None, ge=1, description="Caps the generator's tokens; the verified answer is never cut."
    )
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: Annotated[StrictFloat, Field(ge=0, le=2)] | None = Field(
        None, description="Ignored: decoding is greedy (deterministic)."
    )
    user: str | None = None

    _int_types = field_validator("max_tokens", "max_completion_tokens", mode="before")(no_str_or_bool)


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop", "length"] = "stop"


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    citations: list[CitationOut] = Field(..., description="Verified quotes for the [n] markers in the answer.")
    abstained: bool
    answer_mode: Literal["generated", "extractive", "abstained"]
    passages: list[PassageOut] = Field(
        ..., description="The retrieved passages, closest first; what to read when the answer abstains."
    )
    index_version: str = Field(
        "",
        description="The index version that answered (versions sort by time; `POST /v1/documents` returns the one it made).",
    )


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "newsqa"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
