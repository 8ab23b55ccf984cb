# podipc-examples: the example programs of examples/ (Go and C), used by the
# end-to-end test as application containers. FROM scratch with static binaries.
FROM scratch
COPY --chown=0:0 . /usr/local/bin/
ENV PATH=/usr/local/bin
USER 65532:65532
