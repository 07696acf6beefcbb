"""rlcore's own environments, one module each. ``rlcore.env`` registers their ``rlcore/<Name>-v0`` ids with
string entry points when rlcore is imported, so a module here is only imported when its env is made."""
