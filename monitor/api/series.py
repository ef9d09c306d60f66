"""Placeholder: being written (see the issue tracker)."""

from fastapi import APIRouter

router = APIRouter()
