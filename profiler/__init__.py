"""The throughput profiler behind ``dali-cutmix profile``, in modules with one job each (imports go down the list):

- :mod:`.variants`: what is measured (keys, labels); :mod:`.settings`: how (:class:`~.settings.ProfileSettings`);
- :mod:`.timing`: what a runner promises (:class:`~.timing.Runner`, :class:`~.timing.Timing`);
- :mod:`.stats`: timings to figures, medians, shares and speed-ups; :mod:`.machine`: the machine and its load;
- :mod:`.graphs`: the DALI graphs timed (the builder cut at a stage); :mod:`.runners`: one runner per variant;
- :mod:`.training`: ``--model``, the trainer's step fed by our loader;
- :mod:`.run`: a whole run, as one JSON-ready dict; :mod:`.report`: that dict as JSON, a table and a chart.
"""
