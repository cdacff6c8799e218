# Builds inrforge and runs the demo: docker build -t inrforge . && docker run --rm inrforge
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends make gcc g++ && rm -rf /var/lib/apt/lists/*
WORKDIR /inrforge
COPY . .
# torch 2.13.0 from PyPI's CPU index keeps the image small; the Makefile pins the version.
ENV PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN make install
CMD ["make", "demo"]
