"""Publishing to the Hugging Face Hub through an injectable client.

Only two client methods are used, ``create_repo`` and ``upload_folder`` (those of
``huggingface_hub.HfApi``), so tests and air-gapped users can pass any object that has them,
for example one that writes to a local folder.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from solar_diffusion import __version__


def model_name(model) -> str:
    """How a generated file names its model: a Hub id as given, a local folder by its last part
    (never a path of the machine that made it).

    >>> model_name("/home/me/runs/flare-64/pipeline"), model_name("solar/flares-64"), model_name("")
    ('flare-64/pipeline', 'solar/flares-64', '')
    """
    text = str(model)
    path = Path(text)
    if not text or not (path.is_absolute() or text.startswith(".") or path.exists()):
        return text  # a Hub id ("owner/name") or nothing
    parts = path.resolve().parts
    return "/".join(parts[-2:]) if parts[-1] in ("pipeline", "default") else parts[-1]


def save_pipeline(pipe, folder, model_card: str | None = None) -> Path:
    """``save_pretrained`` (which writes the standalone ``pipeline.py``) and, if given, the model card.

    The folder then loads both ways: ``SolarFlarePipeline.from_pretrained(folder)`` and
    ``DiffusionPipeline.from_pretrained(folder, custom_pipeline=folder, trust_remote_code=True)``.
    """
    folder = Path(folder)
    pipe.save_pretrained(folder)
    if model_card is not None:
        (folder / "README.md").write_text(model_card, encoding="utf-8")
    return folder


def model_index(model_dir) -> dict:
    """A saved pipeline's ``model_index.json``; refused, naming the folder, where it has none."""
    index = Path(model_dir) / "model_index.json"
    if not index.is_file():
        raise FileNotFoundError(f"{model_dir} is not a saved SolarFlarePipeline: it has no model_index.json")
    return json.loads(index.read_text())


def set_model_index(model_dir, **entries) -> None:
    """Set top-level entries of a saved pipeline's ``model_index.json``, written whole (``atomic_write``).

    >>> folder = Path(tempfile.mkdtemp()); _ = (folder / "model_index.json").write_text('{"a": 1}')
    >>> set_model_index(folder, b=2); model_index(folder)
    {'a': 1, 'b': 2}
    """
    from solar_diffusion.files import atomic_write

    config = model_index(model_dir) | entries
    atomic_write(Path(model_dir) / "model_index.json",
                 lambda tmp: Path(tmp).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n"))


def push_to_hub(
    pipe,
    repo_id: str,
    model_card: str | None = None,
    api=None,
    private: bool = False,
    commit_message: str = "Upload SolarFlarePipeline",
) -> str:
    """Save a pipeline with its ``pipeline.py`` and model card and upload it; returns the repo id.

    ``api`` defaults to ``huggingface_hub.HfApi()``.
    """
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi()
    with tempfile.TemporaryDirectory() as tmp:
        save_pipeline(pipe, tmp, model_card)
        return upload_folder(tmp, repo_id, api=api, private=private, commit_message=commit_message)


#: Files a push leaves out (``HfApi.upload_folder``'s fnmatch patterns over paths in the folder):
#: hidden ones (a build's work files and temporaries) and Python caches.
NOT_UPLOADED = [".*", "*/.*", "*__pycache__*"]


def upload_folder(folder, repo_id: str, api, repo_type: str = "model", private: bool = False,
                  commit_message: str = "Upload") -> str:
    """Create the repo if needed and upload a folder to it, without ``NOT_UPLOADED``; returns the repo id."""
    repo = api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
    repo_id = getattr(repo, "repo_id", repo_id)
    api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type=repo_type, commit_message=commit_message,
                      ignore_patterns=NOT_UPLOADED)
    return repo_id


def folder_kind(folder) -> str:
    """"model" for a saved pipeline (``model_index.json``), "dataset" for a built dataset
    (``build_info.json``); anything else is refused, saying what is missing."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    if (folder / "model_index.json").exists():
        if not (folder / "pipeline.py").exists():
            raise ValueError(f"{folder} has no pipeline.py, so Hub users without the package could not load it: "
                             "save it again with save_pretrained (which writes it)")
        return "model"
    if (folder / "build_info.json").exists():
        if not (folder / "README.md").exists():
            raise ValueError(f"{folder} has no README.md (the dataset card that tells load_dataset its splits): "
                             "rebuild it with solar-diffusion build-dataset")
        return "dataset"
    raise ValueError(f"{folder} is neither a saved pipeline (model_index.json) nor a built dataset (build_info.json)")


def push_folder(folder, repo_id: str, api=None, private: bool = False) -> tuple[str, str]:
    """Upload a saved pipeline or a built dataset as the Hub repo ``repo_id`` (a model or a
    dataset repo, by ``folder_kind``): its files as they are, without hidden ones (a build's
    work files), uploaded from where they are. Returns (repo id, kind). ``api`` defaults to ``huggingface_hub.HfApi()``.

    A pushed model loads with ``DiffusionPipeline.from_pretrained(repo, custom_pipeline=repo,
    trust_remote_code=True)``, a pushed dataset with ``load_dataset(repo)``.
    """
    kind = folder_kind(folder)
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi()
    repo = upload_folder(folder, repo_id, api=api, repo_type=kind, private=private,
                         commit_message=f"Upload {kind} with solar-diffusion {__version__}")
    return repo, kind
