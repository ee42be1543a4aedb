"""Chapter 10's terminal (course_lib.talk, `python -m course_lib.chat`): every stage's model,
asked the way it was made to be asked, replies streamed token by token."""

from __future__ import annotations

import subprocess
import sys

import pytest

from course_lib import assets, chat, talk, tools
from course_lib.world import ASSISTANT_NAME


@pytest.fixture(scope="module")
def tok():
    return assets.course_tokenizer(chat=True)


@pytest.fixture(scope="module")
def assistant():
    return assets.load_model("sft")


def scripted(*lines):
    it = iter(lines)
    return lambda _prompt: next(it)


class Screen:
    """A terminal: what was written, as one string."""

    def __init__(self):
        self.text = ""

    def __call__(self, *parts, end="\n", flush=False):
        self.text += " ".join(map(str, parts)) + end


@pytest.mark.parametrize("temperature, seed", [(0.0, 0), (0.9, 3)])
def test_a_streamed_reply_is_the_reply_in_pieces(assistant, tok, temperature, seed):
    convo = [{"role": "user", "content": "Who are you?"}]
    pieces = []
    streamed = chat.reply(assistant, tok, convo, temperature=temperature, seed=seed,
                          on_text=pieces.append)
    assert streamed == chat.reply(assistant, tok, convo, temperature=temperature, seed=seed)
    assert "".join(pieces).strip() == streamed and len(pieces) > 3
    assert all(p for p in pieces) and "<|" not in "".join(pieces)


def test_the_chat_loop_streams_each_reply_on_one_line(assistant, tok):
    screen = Screen()
    convo = chat.chat_loop(assistant, tok, temperature=0, read=scripted("Who are you?", "/quit"),
                           write=screen, stream=True)
    answer = convo[-1]["content"]
    assert f"{ASSISTANT_NAME.lower()}> {answer}\n" in screen.text
    assert ASSISTANT_NAME in answer


def test_every_shipped_model_is_listed_with_how_it_is_asked():
    screen = Screen()
    talk.main(["--list"], write=screen)
    lines = screen.text.strip().splitlines()
    assert [ln.split()[0] for ln in lines] == list(assets.MODELS)
    assert talk.how_to_ask("base") == "base" and talk.how_to_ask("tools") == "tools"
    assert {talk.how_to_ask(m) for m in ("sft", "idk", "rl", "rlhf", "dpo")} == {"chat"}
    assert talk.how_to_ask("runs/chain/rl_model.pt") == "chat"


def test_the_base_model_continues_a_forum_thread_for_one_line(tok):
    base = assets.load_model("base")
    question = "When was Tova Lind born?"
    screen = Screen()
    convo = talk.main(["--model", "base", "--temperature", "0"],
                      read=scripted(question, "/quit"), write=screen)
    answer = convo[-1]["content"]
    assert answer == chat.base_replies(base, tok, [question])[0]
    assert f"base> {answer}\n" in screen.text and "\n" not in answer


def test_the_tool_model_searches_and_the_screen_shows_the_call_and_its_result():
    model, tok, how = talk.load("tools")
    assert how == "tools" and "<|tool_start|>" in tok.special_tokens
    from course_lib.chat import rare_questions

    q = rare_questions(n=1)[0]
    convo = [{"role": "user", "content": q.question}]
    pieces = []
    text = talk.tool_reply(model, tok, convo, temperature=0, on_text=pieces.append)
    expected, calls = tools.run_tool_loop(model, tok, convo, temperature=0)
    assert text == expected and calls and calls[0][0].startswith("search:")
    shown = "".join(pieces)
    assert f"[{calls[0][0]}] " in shown and "[result: " in shown and "<|" not in shown
    assert shown.rstrip().endswith(tools.visible_text(text).split()[-1])


def test_an_unknown_model_names_the_ones_there_are():
    with pytest.raises(SystemExit, match="rlhf"):
        talk.load("gpt-5")
    with pytest.raises(ValueError, match="--how"):
        talk.load("sft", "shout")


def test_python_m_course_lib_chat_is_the_terminal():
    out = subprocess.run([sys.executable, "-m", "course_lib.chat", "--list"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] == "base" and "dpo" in out.stdout
