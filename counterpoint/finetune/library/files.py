"""Files: listing, reading, searching, sharing, moving and archiving files."""

from __future__ import annotations

from typing import Any, Literal

from counterpoint.finetune.library._base import Domain, Fake
from counterpoint.finetune.library.values import SHARED, listof, pick
from counterpoint.tools import tool

DOMAIN = Domain("files")
_FOLDERS = ("/home/docs", "/srv/data", "/var/reports", "/projects/atlas", "/tmp/exports")
_FOLDER = pick(*_FOLDERS)


@DOMAIN.register(
    asks=[
        "What's in the folder {folder}?",
        "List the files in {folder}.",
        "Show me the contents of {folder}.",
    ],
    say="{folder} holds {count} files, the largest being {largest}.",
    values={"folder": _FOLDER},
)
@tool(estimated_latency=0.05)
def list_directory(folder: str, include_hidden: bool = False) -> dict[str, Any]:
    """List the files in a folder.

    Args:
        folder: The folder's path.
        include_hidden: Also list hidden files.
    """
    f = Fake("list_directory", folder, include_hidden)
    return {
        "folder": folder,
        "count": f.int(1, 60),
        "largest": f"{f.pick(('data', 'log', 'notes'))}.{f.pick(('csv', 'txt'))}",
    }


@DOMAIN.register(
    asks=[
        "Read the file {path}.",
        "Open {path} and tell me what it says.",
        "Show me the start of {path}.",
    ],
    then=["then read it", "and then open it for me"],
    say='{path} has {lines} lines; it begins "{preview}".',
    links={"path": "search_files.path"},
    values={"path": SHARED["path"]},
)
@tool(estimated_latency=0.1)
def read_file(path: str, max_lines: int = 20) -> dict[str, Any]:
    """Read the first lines of a text file.

    Args:
        path: The file's path.
        max_lines: How many lines to return.
    """
    f = Fake("read_file", path)
    preview = f.pick(("Quarterly totals", "TODO: fix the parser", "Meeting notes", "id,name,score"))
    return {"path": path, "lines": f.int(3, 4000), "preview": preview}


@DOMAIN.register(
    asks=['Find files named like "{pattern}" in {folder}.', 'Search {folder} for "{pattern}".'],
    say='Found {matches} files matching "{pattern}" in {folder}; the first is {path}.',
    values={"folder": _FOLDER, "pattern": pick("report", "invoice", "backup", "draft", "budget")},
)
@tool(estimated_latency=0.45)
def search_files(pattern: str, folder: str = "/") -> dict[str, Any]:
    """Search a folder tree for files whose names match a pattern.

    Args:
        pattern: Part of the file name.
        folder: Where to search.
    """
    f = Fake("search_files", pattern, folder)
    path = f"{folder.rstrip('/')}/{pattern}_{f.int(1, 40)}.{f.pick(('pdf', 'txt', 'csv'))}"
    return {"pattern": pattern, "folder": folder, "matches": f.int(1, 12), "path": path}


@DOMAIN.register(
    asks=["How big is {path} and when was it changed?", "Get the file info of {path}."],
    then=["then tell me how big it is", "and get its file info"],
    say="{path} is {size_kb} KB, last modified {modified}.",
    links={"path": "search_files.path"},
    values={"path": SHARED["path"]},
)
@tool(estimated_latency=0.03)
def get_file_info(path: str) -> dict[str, Any]:
    """Get a file's size and modification date.

    Args:
        path: The file's path.
    """
    f = Fake("get_file_info", path)
    return {
        "path": path,
        "size_kb": f.int(1, 90000),
        "modified": f"2026-{f.int(1, 12):02d}-{f.int(1, 28):02d}",
    }


@DOMAIN.register(
    asks=["Zip {paths} into {archive_name}.", "Compress {paths} as {archive_name}."],
    say="Created {archive_name} ({size_kb} KB) from {count} files.",
    values={
        "paths": listof(SHARED["path"], 2, 3),
        "archive_name": pick("backup.zip", "reports.zip", "bundle.zip", "photos.zip"),
    },
)
@tool(estimated_latency=1.5)
def compress_files(paths: list[str], archive_name: str) -> dict[str, Any]:
    """Compress files into a zip archive.

    Args:
        paths: The files to compress.
        archive_name: The archive's file name.
    """
    return {
        "archive_name": archive_name,
        "count": len(paths),
        "size_kb": Fake("compress_files", paths).int(10, 50000),
    }


@DOMAIN.register(
    asks=["Move {path} to {destination_folder}.", "Put {path} into {destination_folder}."],
    then=["then move it to {destination_folder}", "and move it into {destination_folder}"],
    say="{path} is now in {destination_folder}.",
    links={"path": "search_files.path"},
    values={"path": SHARED["path"], "destination_folder": _FOLDER},
)
@tool(estimated_latency=0.08)
def move_file(path: str, destination_folder: str) -> dict[str, Any]:
    """Move a file to another folder.

    Args:
        path: The file's path.
        destination_folder: The folder to move it to.
    """
    return {"path": path, "destination_folder": destination_folder, "moved": True}


@DOMAIN.register(
    asks=[
        "Delete {path}.",
        ("Permanently delete {path}, skipping the trash.", {"permanent": True}),
    ],
    then=["then delete it", ("and then delete it permanently", {"permanent": True})],
    say="{path} is deleted.",
    links={"path": "search_files.path"},
    values={"path": SHARED["path"]},
)
@tool(estimated_latency=0.06)
def delete_file(path: str, permanent: bool = False) -> dict[str, Any]:
    """Delete a file (to the trash unless permanent).

    Args:
        path: The file's path.
        permanent: Skip the trash.
    """
    return {"path": path, "deleted": True, "permanent": permanent}


@DOMAIN.register(
    asks=["Share {path} with {email}.", "Give {email} {permission} access to {path}."],
    then=["then share it with {email}", "and give {email} {permission} access to it"],
    say="{email} can now {permission} {path}.",
    links={"path": "search_files.path"},
    values={"path": SHARED["path"]},
)
@tool(estimated_latency=0.35)
def share_file(
    path: str, email: str, permission: Literal["view", "comment", "edit"] = "view"
) -> dict[str, Any]:
    """Share a file with someone.

    Args:
        path: The file's path.
        email: Who to share it with.
        permission: What they may do.
    """
    return {"path": path, "email": email, "permission": permission, "shared": True}


@DOMAIN.register(
    asks=["How many words are in {path}?", "Count the words in {path}."],
    then=["then count its words", "and tell me how many words it has"],
    say="{path} has {words} words.",
    links={"path": "search_files.path"},
    values={"path": SHARED["path"]},
)
@tool(estimated_latency=0.2)
def count_words(path: str) -> dict[str, Any]:
    """Count the words in a text file.

    Args:
        path: The file's path.
    """
    return {"path": path, "words": Fake("count_words", path).int(12, 90000)}
