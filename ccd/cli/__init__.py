"""The ``ccd`` command line: ``main`` (parser, exit codes), ``common`` (the session, the error
guard, output) and one module per noun: run, config, agent, sticky, queue, status, customer,
callback, dnc, disposition."""
