"""The headless demo's step for each paper method: ``demos/<slug>.py`` defines
``run(viewer, widgets, app, out, steps) -> dict``, which drives the method's dock on its
sample data, takes screenshots into ``out`` and returns the figures for the report.
:data:`napari_medseg.demo.DEMOS` lists them from :data:`napari_medseg.methods.METHODS`, so a
new method adds its step here and touches no shared file."""
