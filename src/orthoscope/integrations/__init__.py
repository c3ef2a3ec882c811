"""Orthoscope inside other libraries' training loops: `integrations.transformers.OrthoscopeCallback`.

Each module imports its library; `import orthoscope` and `import orthoscope.integrations` import none.
"""
