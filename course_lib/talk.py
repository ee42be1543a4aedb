"""Talk to any model of the course in a terminal (chapter 10): ``python -m course_lib.chat``.

Every stage of the chain leaves a model (``assets.MODELS``): the base model of chapter 4, the
assistant of chapter 6, chapter 7's "I don't know" and tool models, chapter 8's RL model and
chapter 9's RLHF and DPO models. Each is asked the way it was made to be asked:

- the base model is not an assistant: each question is put into chapter 5's forum prompt and the
  model continues the thread for one line;
- the chat models get the conversation in the chat format (chapter 6);
- the tool model also gets chapter 7's tool loop: when it writes a call, the search engine or the
  calculator runs and its result is pasted into the context, shown in the terminal as
  ``[search: ...]`` and ``[result: ...]``.

Replies stream: each token is shown as it is sampled (chapter 5's KV cache makes that cheap).

    python -m course_lib.chat --list
    python -m course_lib.chat --model rl --temperature 0
    python -m course_lib.chat --model runs/chain/tool_model.pt --how tools
"""

from __future__ import annotations

from pathlib import Path

from course_lib import assets, chat, tools
from course_lib.assets import ENDOFTEXT, RESULT_END, RESULT_START, TOOL_END, TOOL_START
from course_lib.generate import stream

HOWS = ("base", "chat", "tools")
SHOWN = {TOOL_START: "[", TOOL_END: "] ", RESULT_START: "[result: ", RESULT_END: "] "}


def how_to_ask(name_or_path: str) -> str:
    """``"base"``, ``"chat"`` or ``"tools"`` for a shipped model's name (``assets.MODELS``);
    ``"chat"`` for a file."""
    spec = assets.MODELS.get(name_or_path)
    if spec is None:
        return "chat"
    return "tools" if spec.tools else "chat" if spec.chat else "base"


def base_reply(model, tokenizer, conversation, temperature: float = 0.7, seed: int = 0,
               on_text=None, max_new_tokens: int = 60) -> str:
    """The base model's "reply" to the conversation's last message: chapter 5's forum prompt,
    continued up to the end of the line (streamed to ``on_text``)."""
    question = conversation[-1]["content"]
    got, sent = "", 0
    for piece in stream(model, tokenizer, chat.forum_prompt(question), max_new_tokens,
                        temperature=temperature, seed=seed, stop="\n"):
        got += piece
        line = got.split("\n")[0].split(ENDOFTEXT)[0]
        visible = line.lstrip()
        if on_text is not None and len(visible) > sent:
            on_text(visible[sent:])
        sent = len(visible)
        if len(line) < len(got):    # the line ended
            break
    return got.split("\n")[0].split(ENDOFTEXT)[0].strip()


def tool_reply(model, tokenizer, conversation, temperature: float = 0.7, seed: int = 0,
               on_text=None, max_new_tokens: int = 200) -> str:
    """The tool model's reply through ``tools.run_tool_loop`` (search and calculator), its calls
    and results inline; ``on_text`` sees the tool tokens as ``[`` ``]`` and ``[result: ...]``."""
    def shown(piece):   # a pasted result comes as one piece, its tokens inside
        for token, text in SHOWN.items():
            piece = piece.replace(token, text)
        on_text(piece)

    text, _ = tools.run_tool_loop(model, tokenizer, conversation, max_new_tokens=max_new_tokens,
                                  temperature=temperature, seed=seed,
                                  on_text=shown if on_text is not None else None)
    return text


RESPOND = {"base": base_reply, "chat": chat.reply, "tools": tool_reply}


def load(name_or_path: str, how: str | None = None):
    """``(model, tokenizer, how)`` for a shipped model's name or an exported file."""
    how = how or how_to_ask(name_or_path)
    if how not in HOWS:
        raise ValueError(f"--how {how!r}: one of {', '.join(HOWS)}")
    if name_or_path not in assets.MODELS and not Path(name_or_path).exists():
        raise SystemExit(f"no model {name_or_path!r}: name one of {', '.join(assets.MODELS)} "
                         "or give an exported .pt file (python -m course_lib.chat --list)")
    model = assets.load_model(name_or_path)
    tok = assets.course_tokenizer(chat=True, tools=how == "tools")
    return model, tok, how


def models_table() -> str:
    """One line per shipped model: its name, chapter, how it is asked, its file."""
    lines = []
    for name, spec in assets.MODELS.items():
        how = how_to_ask(name)
        made = assets.ASSETS_DIR / spec.weights
        lines.append(f"{name:6} chapter {spec.chapter:2}  asked {how:5}  {made}"
                     + ("" if made.exists() else "  (missing)"))
    return "\n".join(lines)


def main(argv=None, read=input, write=print) -> list:
    import argparse

    p = argparse.ArgumentParser(
        prog="python -m course_lib.chat",
        description="Talk to a model of the course: /reset forgets, /quit ends.")
    p.add_argument("--model", default="sft",
                   help=f"a shipped model ({', '.join(assets.MODELS)}) or an exported .pt file "
                        "(default: sft, the assistant)")
    p.add_argument("--how", choices=HOWS, default=None,
                   help="how to ask it (default: how the named model was made to be asked; a "
                        "file: chat)")
    p.add_argument("--base", action="store_true", help="the base model (same as --model base)")
    p.add_argument("--system", help="a system message (the tool model reads its name there)")
    p.add_argument("--temperature", type=float, default=0.7, help="0: greedy")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-stream", action="store_true", help="show each reply when it is done")
    p.add_argument("--list", action="store_true", help="list the shipped models and stop")
    a = p.parse_args(argv)
    if a.list:
        write(models_table())
        return []
    name = "base" if a.base else a.model
    model, tok, how = load(name, a.how)
    write(f"({name}, asked {how}{', with search and calculator' if how == 'tools' else ''}; "
          "/reset forgets, /quit ends)")
    return chat.chat_loop(model, tok, a.system, a.temperature, a.seed, read=read, write=write,
                          respond=RESPOND[how], stream=not a.no_stream,
                          name="base" if how == "base" else None)


if __name__ == "__main__":
    main()
